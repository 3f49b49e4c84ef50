"""DriftSketch: class-conditional flow matching over 32 cubic Bezier strokes.

    from driftsketch import load_model, generate_beziers
    model = load_model("runs/base/model.pt")
    sketches, noise = generate_beziers(model, "circle", num_samples=8, num_steps=10, cfg_scale=2.0, seed=0)
"""
import os

# Before torch loads OpenMP (it reads this once): torch threads waiting for work sleep instead of
# spinning. On a shared machine the spinning threads burnt 6x the CPU of a Flow-DPO step and made it
# 5x slower (2 threads, load average 8 on 2 cores; docs/online_loop.md); idle, it costs ~nothing.
# Set OMP_WAIT_POLICY=ACTIVE to have the spinning back.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from driftsketch.lazy import lazy_attributes  # noqa: E402
from driftsketch.sketch import FLAT_SHAPE, NUM_SEGMENTS, SKETCH_SHAPE  # noqa: E402

__all__ = ["load_model", "generate_beziers", "SKETCH_SHAPE", "FLAT_SHAPE", "NUM_SEGMENTS"]


# Lazy so that `import driftsketch.data` does not pay for importing torch.
__getattr__ = lazy_attributes({"load_model": "driftsketch.checkpoint:load_model",
                               "generate_beziers": "driftsketch.sampling:generate_beziers"})
