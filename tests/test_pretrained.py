"""The shipped built-in base (driftsketch/pretrained/builtin-base.pt) that `bash scripts/demo.sh` starts from."""
from __future__ import annotations

from pathlib import Path

import pytest

import driftsketch
from driftsketch.checkpoint import load_checkpoint, load_model
from driftsketch.config import read_yaml, CONFIG_DIR

SHIPPED = Path(driftsketch.__file__).parent / "pretrained" / "builtin-base.pt"


def test_shipped_base_is_a_small_weights_only_checkpoint_of_the_builtin_classes():
    ckpt = load_checkpoint(SHIPPED)
    assert ckpt["config"]["class_names"] == read_yaml(CONFIG_DIR / "data.yaml")["builtin"]["classes"]
    assert ckpt["optimizer_state_dict"] is None and ckpt["ema"] is None and ckpt["extra"]["exported_ema"]
    assert ckpt["extra"]["train_config"]["data"] == "builtin" and SHIPPED.stat().st_size < 4 * 2**20


def test_the_demo_starts_from_the_shipped_base_unless_asked_to_train():
    demo = (Path(__file__).parents[1] / "scripts" / "demo.sh").read_text()
    assert "BASE=${DEMO_BASE:-driftsketch/pretrained/builtin-base.pt}" in demo and "DEMO_TRAIN_BASE" in demo


@pytest.mark.slow
def test_shipped_base_draws_every_class_recognisably_for_a_classifier_that_never_saw_its_data():
    from driftsketch.data import load_dataset
    from driftsketch.evaluation.classifier import config_replace, train_classifier
    from driftsketch.evaluation.evaluate import generate_per_class
    from driftsketch.evaluation.settings import load_eval_config

    clf = train_classifier(load_dataset("builtin:seed=1,per_class=200"),  # other doodles than the base's
                           config_replace(load_eval_config().classifier, steps=250), progress=False)
    x, y = generate_per_class(load_model(SHIPPED), clf.class_names, 12, seed=5, progress=False)
    per_class = [(clf.predict(x[y == c]) == c).mean() for c in range(len(clf.class_names))]
    assert sum(per_class) / len(per_class) >= 0.9 and min(per_class) >= 0.5, per_class
