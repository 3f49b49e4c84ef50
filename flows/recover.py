"""Mark flow runs whose process is gone (its machine died with its worker) as Crashed.

    python -m flows.recover RUN_ID [RUN_ID ...]

Prefect marks a run Crashed when its worker sees the flow-run process die; when the worker dies with it,
nobody does: the run stays Running (and `prefect flow-run cancel` leaves it Cancelling), and the next
round of the deployment waits for the concurrency slot until the dead run's lease expires (5 min by
default). This forces those runs to Crashed, which frees the slot at once. It refuses a run in any other
state, and a run whose process still lives on this machine (its ``infrastructure_pid``).
"""
from __future__ import annotations

import argparse
import asyncio
import os

from driftsketch.errors import DriftSketchError, run_cli

STUCK = ("RUNNING", "CANCELLING", "PENDING")


class RecoverError(DriftSketchError):
    """A run that must not be marked Crashed (not stuck, or its process is alive)."""


def _alive(pid: str | None) -> bool:
    """True when ``pid`` (a plain process id, as the process worker records it) is alive on this machine."""
    if not pid or not str(pid).isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def mark_crashed(run_ids: list[str]) -> list[str]:
    """Force each run (Running, Cancelling or Pending, process gone) to Crashed; returns their new states."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    out = []
    async with get_client() as client:
        for run_id in run_ids:
            try:
                run = await client.read_flow_run(run_id)
            except ObjectNotFound:
                raise RecoverError(f"no flow run {run_id} at {client.api_url}") from None
            state = run.state.type.value if run.state else "NONE"
            if state not in STUCK:
                raise RecoverError(f"flow run {run_id} is {state}, not one of {', '.join(STUCK)}: nothing to recover")
            if _alive(run.infrastructure_pid):
                raise RecoverError(f"flow run {run_id}: its process {run.infrastructure_pid} is alive on this machine; "
                                   "cancel it with `prefect flow-run cancel` instead")
            msg = "marked Crashed by flows.recover: its process is gone (worker and flow run killed together)"
            await client.set_flow_run_state(run_id, Crashed(message=msg), force=True)
            out.append(f"{run_id}: {state} -> {(await client.read_flow_run(run_id)).state.type.value}")
    return out


def main(argv: list[str] | None = None) -> int:
    def body() -> None:
        p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
        p.add_argument("run_ids", nargs="+", help="flow run ids (`prefect flow-run ls --state Running`)")
        args = p.parse_args(argv)
        for line in asyncio.run(mark_crashed(args.run_ids)):
            print(line)

    return run_cli("flows.recover", body)


if __name__ == "__main__":
    raise SystemExit(main())
