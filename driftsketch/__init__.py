"""DriftSketch: class-conditional flow matching over 32 cubic Bezier strokes.

    from driftsketch import load_model, generate_beziers
    model = load_model("runs/base/model.pt")
    sketches, noise = generate_beziers(model, "circle", num_samples=8, num_steps=10, cfg_scale=2.0, seed=0)
"""
from driftsketch.lazy import lazy_attributes
from driftsketch.sketch import FLAT_SHAPE, NUM_SEGMENTS, SKETCH_SHAPE

__all__ = ["load_model", "generate_beziers", "SKETCH_SHAPE", "FLAT_SHAPE", "NUM_SEGMENTS"]


# Lazy so that `import driftsketch.data` does not pay for importing torch.
__getattr__ = lazy_attributes({"load_model": "driftsketch.checkpoint:load_model",
                               "generate_beziers": "driftsketch.sampling:generate_beziers"})
