"""Flow `base-train`: train the base model through Prefect and register it in the model registry.

    prefect deployment run base-train/base-train --param overrides='["max_steps=500"]'
    python -m flows.base_train --set max_steps=200            # the same, in-process

Defaults: ``base.train_config`` / ``device`` and ``base.train_overrides`` / ``registry_dir`` / ``work_dir``/base of
``configs/round.yaml``, read when the run starts. The trained model becomes current only if the
registry has no current model yet.
"""
from __future__ import annotations

import argparse

from prefect import flow, get_run_logger

from flows.params import load_round_params, train_overrides
from tasks.models import register_base, train_base_model


@flow(name="base-train")
def base_train(train_config: str | None = None, overrides: list[str] | None = None,
               checkpoint_dir: str | None = None, registry_dir: str | None = None) -> str:
    """Train with ``train_config`` + ``overrides`` into ``checkpoint_dir``; returns the registered model id.
    A parameter left null takes its value from configs/round.yaml."""
    defaults = load_round_params()
    registry_dir = registry_dir or defaults.registry_dir
    checkpoint = train_base_model(train_config or defaults.base.train_config,
                                  train_overrides(defaults) if overrides is None else list(overrides),
                                  checkpoint_dir or f"{defaults.work_dir}/base")
    model_id = register_base(registry_dir, checkpoint)
    get_run_logger().info("base model %s registered in %s", model_id, registry_dir)
    return model_id


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--set", dest="overrides", action="append", default=[], help="TrainConfig override KEY=VALUE")
    p.add_argument("--checkpoint-dir", default=None, help="default: <round.yaml work_dir>/base")
    args = p.parse_args(argv)
    base_train(overrides=[*train_overrides(load_round_params()), *args.overrides],
               checkpoint_dir=args.checkpoint_dir)


if __name__ == "__main__":
    main()
