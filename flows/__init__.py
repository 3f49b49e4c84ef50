"""Prefect flows: ``online-dpo`` (one round of online preference learning) and ``base-train``."""
import driftsketch  # noqa: F401,E402  (first: sets OMP_WAIT_POLICY before anything loads torch)
