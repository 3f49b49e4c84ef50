"""Thin typed Prefect tasks over the plain modules (driftsketch/, dpo/, labeling/); they return paths and small records."""
import driftsketch  # noqa: F401,E402  (first: sets OMP_WAIT_POLICY before anything loads torch)
