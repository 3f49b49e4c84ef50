"""DriftSketch: class-conditional flow matching over 32 cubic Bezier strokes.

    from driftsketch import load_model, generate_beziers
    model = load_model("runs/base/model.pt")
    sketches, noise = generate_beziers(model, "circle", num_samples=8, num_steps=10, cfg_scale=2.0, seed=0)
"""
from driftsketch.sketch import FLAT_SHAPE, NUM_SEGMENTS, SKETCH_SHAPE

__all__ = ["load_model", "generate_beziers", "SKETCH_SHAPE", "FLAT_SHAPE", "NUM_SEGMENTS"]


def __getattr__(name: str):
    # Lazy so that `import driftsketch.data` does not pay for importing torch.
    if name == "load_model":
        from driftsketch.checkpoint import load_model
        return load_model
    if name == "generate_beziers":
        from driftsketch.sampling import generate_beziers
        return generate_beziers
    raise AttributeError(name)
