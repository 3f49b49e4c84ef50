"""Prefect flows: ``online-dpo`` (one round of online preference learning) and ``base-train``."""
