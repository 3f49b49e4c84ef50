"""Flow `base-train`: train the base model through Prefect and register it in the model registry.

    prefect deployment run base-train/base-train --param overrides='["max_steps=500"]'
    python -m flows.base_train --set max_steps=200            # the same, in-process

Defaults: ``base.train_config`` / ``base.train_overrides`` / ``registry_dir`` of ``configs/round.yaml``.
The trained model becomes current only if the registry has no current model yet.
"""
from __future__ import annotations

import argparse

from prefect import flow, get_run_logger

from flows.params import load_round_params
from tasks.models import register_base, train_base_model

_DEFAULTS = load_round_params()


@flow(name="base-train")
def base_train(train_config: str = _DEFAULTS.base.train_config,
               overrides: list[str] = _DEFAULTS.base.train_overrides,
               checkpoint_dir: str = f"{_DEFAULTS.work_dir}/base",
               registry_dir: str = _DEFAULTS.registry_dir) -> str:
    """Train with ``train_config`` + ``overrides`` into ``checkpoint_dir``; returns the registered model id."""
    checkpoint = train_base_model(train_config, list(overrides), checkpoint_dir)
    model_id = register_base(registry_dir, checkpoint)
    get_run_logger().info("base model %s registered in %s", model_id, registry_dir)
    return model_id


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--set", dest="overrides", action="append", default=[], help="TrainConfig override KEY=VALUE")
    p.add_argument("--checkpoint-dir", default=f"{_DEFAULTS.work_dir}/base")
    args = p.parse_args(argv)
    base_train(overrides=[*_DEFAULTS.base.train_overrides, *args.overrides], checkpoint_dir=args.checkpoint_dir)


if __name__ == "__main__":
    main()
