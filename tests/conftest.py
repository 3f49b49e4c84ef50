"""Shared pytest setup. Fixture modules live in tests/fixtures_*.py and are registered here."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so the fixture modules import by name

pytest_plugins = ["fixtures_prefect", "fixtures_labelstudio"]
