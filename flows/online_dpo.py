"""Flow `online-dpo` (trivial body while the pieces land)."""
from __future__ import annotations

from prefect import flow, get_run_logger

from flows.params import RoundParams, load_round_params


@flow(name="online-dpo")
def online_dpo(params: RoundParams = load_round_params()) -> dict:
    get_run_logger().info("round with registry %s", params.registry_dir)
    return {"registry": params.registry_dir}
