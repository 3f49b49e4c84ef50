"""Label Studio integration: a local server, pairwise/rating projects, push tasks, pull preferences
exactly once, and a simulated annotator. Uses ``driftsketch`` (render, judges) and ``dpo`` (preference
store); knows nothing of Prefect. Entry point: ``driftsketch-labelstudio`` (labeling/cli.py)."""
import driftsketch  # noqa: F401,E402  (first: sets OMP_WAIT_POLICY before anything loads torch)
