"""Fuzzing of every parser of outside data (hypothesis; targets in tests/fuzz_targets.py): no exception
other than the project's own errors or a clean skip. A modest number of inputs here (fast);
benchmarks/fuzz_parsers.py runs >= 10,000 per parser (docs/errors.md has the counts)."""
import pytest
from hypothesis import HealthCheck, given, settings

from fuzz_targets import TARGETS

pytestmark = pytest.mark.filterwarnings("ignore")  # damaged inputs make numpy and torch warn; that is expected

EXAMPLES = 60  # per parser; ~1-2 s each on the shared 2-core machine


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_parser_raises_only_project_errors(name):
    target = TARGETS[name]

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(target.strategy)
    def run(example):
        assert target.check(example) in ("accepted", "refused", "skipped")

    run()


def test_known_findings_stay_fixed(tmp_path):
    """Inputs the fuzzer found, each once a crash: now a clean refusal or skip."""
    import numpy as np

    from driftsketch.data.controlsketch import ControlSketchError, parse_svg_sketch
    from driftsketch.data.dataset import DataError, SketchData
    from dpo.store import _read_session

    from driftsketch.data.bezier_fit import fit_drawings

    dots = [np.array([[0.0, 0.0]]), np.array([[0.0, 1.0]])]  # was: np.interp "array of sample points is empty"
    batch = fit_drawings([dots])  # ... and with it a whole import, for a batch of dots-only drawings
    assert batch.errors == [""] and np.isfinite(batch.sketches).all()
    with pytest.raises(ControlSketchError, match="command 'C' needs 6 numbers"):
        parse_svg_sketch('<svg><path d="M0 0 C 1 2 C 3 4 5 6 7 8"/></svg>')  # was: float('C')
    np.savez(tmp_path / "d.npz", beziers=np.zeros((3, 32, 4, 2)), labels=np.zeros((3, 1), int),
             class_names=np.array(["a"]), source_ids=np.array(["x", "y", "z"]))
    with pytest.raises(DataError, match="labels: expected one dimension"):  # was: bincount "object too deep"
        SketchData.load_npz(tmp_path / "d.npz")
    from driftsketch.checkpoint import CheckpointError, check_checkpoint
    from fuzz_targets import _tiny_checkpoint

    ckpt = _tiny_checkpoint()
    ckpt = {**ckpt, "config": {**ckpt["config"], "model": {**ckpt["config"]["model"], "mlp_ratio": 1e30}}}
    with pytest.raises(CheckpointError, match="cannot be built"):  # was: TypeError from torch.empty's size
        check_checkpoint(ckpt)
    deep = b'{"id": ' + b"[" * 3000 + b"]" * 3000 + b"}\n"  # was: RecursionError out of the store's reader
    (tmp_path / "s.jsonl").write_bytes(deep)
    records, issues = _read_session(tmp_path / "s.jsonl")
    assert records == [] and len(issues) == 1 and "s.jsonl:1: malformed record" in issues[0]
