"""Thin typed Prefect tasks over the plain modules (driftsketch/, dpo/, labeling/); they return paths and small records."""
