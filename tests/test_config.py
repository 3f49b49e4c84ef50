"""One config system: every config class is strict, has no defaults in code, and its YAML is complete."""
from __future__ import annotations

import importlib
import pkgutil

import pytest
import yaml
from pydantic import ValidationError

from driftsketch.config import CONFIG_DIR, Config, ConfigError, from_dict, load_config, read_yaml, replace_config

PACKAGES = ("driftsketch", "dpo", "labeling", "tasks", "flows")


def all_config_classes() -> list[type[Config]]:
    for pkg in PACKAGES:
        mod = importlib.import_module(pkg)
        for info in pkgutil.walk_packages(mod.__path__, f"{pkg}."):
            importlib.import_module(info.name)
    seen, todo = [], list(Config.__subclasses__())
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(seen, key=lambda c: f"{c.__module__}.{c.__name__}")


CLASSES = all_config_classes()
TOP_LEVEL = {cls.defaults_from: cls for cls in CLASSES if cls.defaults_from and ":" not in cls.defaults_from}


def test_every_config_class_is_found():
    names = {c.__name__ for c in CLASSES}
    assert {"TrainConfig", "SamplingConfig", "ModelConfig", "AugmentConfig", "FitConfig", "ImportConfig",
            "BuiltinConfig", "DataConfig", "ClassifierConfig", "EvaluateConfig", "EvalConfig",
            "LabelingJudgeConfig", "HiddenJudgeConfig", "DPOConfig", "RewardConfig", "AmplifyConfig",
            "LabelStudioConfig", "ServerConfig", "PushConfig", "PullConfig", "BotConfig", "RoundParams",
            "PromotionGate", "LabelStudioParams"} <= names
    assert set(TOP_LEVEL) == {p.name for p in CONFIG_DIR.glob("*.yaml")}  # one top-level class per file


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_no_defaults_in_code_and_the_yaml_section_is_complete(cls):
    assert cls.defaults_from, f"{cls.__name__} names no YAML section for its defaults"
    with_defaults = [name for name, f in cls.model_fields.items() if not f.is_required()]
    assert with_defaults == [], f"{cls.__name__}: defaults in code for {with_defaults}; put them in the YAML"
    cls()  # every field has its value in the YAML section


@pytest.mark.parametrize("name", sorted(TOP_LEVEL))
def test_typed_defaults_equal_the_yaml(name):
    """Every key of the file is read by its typed config, with the type the YAML gives it."""
    cls = TOP_LEVEL[name]
    assert cls().model_dump(mode="json") == read_yaml(CONFIG_DIR / name)
    assert load_config(cls, CONFIG_DIR / name) == cls()


def test_unknown_keys_and_bad_values_name_the_file_and_field(tmp_path):
    from driftsketch.train_config import TrainConfig

    bad = tmp_path / "train.yaml"
    bad.write_text(yaml.safe_dump({"model": {"depthh": 3}}))
    with pytest.raises(ConfigError, match=r"train\.yaml: model\.depthh: unknown key"):
        load_config(TrainConfig, bad)
    with pytest.raises(ConfigError, match=r"t2\.yaml: lr: .*'fast'"):
        load_config(TrainConfig, _write(tmp_path / "t2.yaml", {"lr": "fast"}))
    with pytest.raises(ConfigError, match="override 'lr': expected KEY=VALUE"):
        load_config(TrainConfig, None, overrides=["lr"])
    with pytest.raises(ValidationError, match="dimm"):
        TrainConfig(model={"dimm": 3})


def _write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_partial_file_takes_the_rest_from_its_sections_yaml(tmp_path):
    from driftsketch.evaluation.settings import EvalConfig

    cfg = load_config(EvalConfig, _write(tmp_path / "eval.yaml", {"hidden_classifier": {"steps": 7}}))
    assert cfg.hidden_classifier.steps == 7
    assert cfg.hidden_classifier.resolution == EvalConfig().hidden_classifier.resolution != cfg.classifier.resolution


def test_replace_config_validates_and_keeps_the_rest():
    from driftsketch.model import ModelConfig

    cfg = ModelConfig(num_classes=3, dim=32)
    new = replace_config(cfg, depth=2)
    assert (new.depth, new.dim, new.num_classes, cfg.depth) == (2, 32, 3, ModelConfig().depth)
    with pytest.raises(ConfigError, match="deep: unknown key"):
        replace_config(cfg, deep=2)
    with pytest.raises(ConfigError, match="depth"):
        replace_config(cfg, depth="two")


def test_old_checkpoint_model_dicts_still_load():
    """Checkpoints store the model config as a plain dict (dataclasses.asdict before the move to pydantic)."""
    from driftsketch.model import ModelConfig

    old = {"num_classes": 10, "dim": 96, "depth": 4, "heads": 4, "mlp_ratio": 4.0, "dropout": 0.0,
           "codec": "relative", "gap_scale": 2.0, "handle_scale": 3.0}
    assert from_dict(ModelConfig, old).model_dump() == old
    oldest = {k: v for k, v in old.items() if k not in ("codec", "gap_scale", "handle_scale")}
    assert from_dict(ModelConfig, oldest).codec == ModelConfig().codec  # keys added later: today's default
