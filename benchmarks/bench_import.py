"""Import speed: the whole ``driftsketch-data import`` command on real pen-stroke drawings, old vs new fitter.

    .venv/bin/python benchmarks/bench_import.py --shared ../shared/data --per-class 1000 --workers 2

Times the command as a user runs it (a subprocess: start-up, reading, fitting, writing) on
``--per-class`` MNIST pen-stroke drawings per digit, and in the same run the command with the
previous fitter's settings (``--set fit.staircase_resample=0``: every stroke resampled every 2 px), so
the speed ratio holds on a busy machine. Prints drawings/s of wall time, CPU seconds of all its
processes, peak RSS of its largest process and the load average. Then, on the same drawings, the
Chamfer fit error (px on the 512 canvas) of both outputs against the original polylines (mean and
p95 over every ``--error-every``-th drawing), checks that every sketch has exactly 32 real segments
(no padding: no segment without length, no all-zero sketch) and, with ``--resume-check``, kills an
import with SIGKILL halfway, re-runs it and checks that the result is the uninterrupted file's and
that the progress bar showed drawings/s.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from driftsketch.data.bezier_fit import FitConfig, chamfer_px, normalise
from driftsketch.data.quickdraw import read_lines
from driftsketch.data.settings import ImportConfig
from driftsketch.data.strokes import Strokes
from driftsketch.sketch import to_canvas

ROOT = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).parent / "driftsketch-data"
CLI = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "driftsketch.data.cli"]


def load_line() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def timed(source: Path, out: Path, per_class: int, workers: int, extra: list[str]) -> dict:
    """Run the command to completion: wall and CPU seconds of it and its workers, and the peak RSS of
    its largest process (``os.wait4``: this command alone)."""
    out.unlink(missing_ok=True)
    cmd = [*CLI, "import", str(source), "--out", str(out), "--max-per-class", str(per_class),
           "--workers", str(workers), *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"import failed ({proc.returncode}):\n{err[-2000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024,
            "stderr": err}


def originals(data: dict, source: Path, margin: float) -> list[list[np.ndarray]]:
    """The drawings behind ``data`` (by class and ``source_ids``) as px strokes on the 512 canvas."""
    out = []
    for label, sid in zip(data["labels"].tolist(), data["source_ids"].tolist()):
        name = str(data["class_names"][label])
        out.append((source / f"{name}.ndjson", sid))
    by_file: dict[Path, dict[str, int]] = {}
    for i, (path, sid) in enumerate(out):
        by_file.setdefault(path, {})[sid] = i
    drawings: list = [None] * len(out)
    for path, wanted in by_file.items():
        offsets, pos = [], 0
        with open(path, "rb") as fh:
            for no, line in enumerate(fh, start=1):
                offsets.append((pos, len(line.rstrip(b"\n")), no))
                pos += len(line)
        for sid, strokes in read_lines(str(path), np.array(offsets, dtype=np.int64)):
            if sid in wanted:
                drawings[wanted[sid]] = strokes
    missing = sum(d is None for d in drawings)
    if missing:
        raise SystemExit(f"{missing} drawings not found by source id")
    return drawings


def fit_errors(beziers: np.ndarray, drawings: list, every: int, margin: float) -> np.ndarray:
    """Chamfer distance (px) of every ``every``-th sketch against its original drawing."""
    errs = []
    for i in range(0, len(drawings), every):
        px, _, _ = normalise(Strokes.pack([drawings[i]]), margin)
        strokes = [px.pts[s:s + n] for s, n in zip(px.starts, px.lengths)]
        errs.append(chamfer_px(strokes, to_canvas(beziers[i].astype(np.float64))))
    return np.asarray(errs)


def padding_check(beziers: np.ndarray) -> str:
    """'ok' when every sketch has 32 segments of positive length and none is all zeros."""
    if beziers.shape[1:] != (32, 4, 2):
        return f"FAILED: shape {beziers.shape}"
    spread = np.abs(beziers - beziers[:, :, :1]).max(axis=(2, 3))  # 0 for a segment whose 4 points coincide
    empty = int((spread == 0).sum())
    zero = int((np.abs(beziers).max(axis=(1, 2, 3)) == 0).sum())
    return "ok" if not empty and not zero else f"FAILED: {empty} segments without length, {zero} all-zero sketches"


def resume_check(source: Path, out: Path, reference: Path, per_class: int, workers: int) -> str:
    """Kill an import with SIGKILL once some batches are stored, run it again, compare with ``reference``."""
    out.unlink(missing_ok=True)
    partial = out.parent / f"{out.name}.partial"
    cmd = [*CLI, "import", str(source), "--out", str(out), "--max-per-class", str(per_class),
           "--workers", str(workers)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    half = 10 * -(-per_class // ImportConfig().batch_size) // 2  # half of the batches (one file per digit)
    while proc.poll() is None:
        batches = len(list(partial.glob("batch-*.npz"))) if partial.is_dir() else 0
        if batches >= half:
            os.killpg(proc.pid, signal.SIGKILL)  # the command and its workers
            break
        time.sleep(0.05)
    proc.wait()
    if out.exists() or not partial.is_dir():
        return "not tested (the import finished before it could be killed)"
    kept = len(list(partial.glob("batch-*.npz")))
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if again.returncode:
        return f"FAILED: the re-run exited {again.returncode}: {again.stderr[-500:]}"
    with np.load(out) as a, np.load(reference) as b:
        same = all(np.array_equal(a[k], b[k]) for k in ("beziers", "labels", "source_ids", "class_names"))
    first_line = next((ln for ln in again.stderr.replace("\r", "\n").splitlines() if "fitting:" in ln), "")
    return (f"{'ok' if same else 'FAILED'}: killed with {kept} of {2 * half} batches stored; the re-run wrote "
            f"{'the same arrays as' if same else 'OTHER arrays than'} the uninterrupted run; "
            f"first progress line of the re-run: {first_line.strip()[:90]!r}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=Path("../shared/data"))
    p.add_argument("--per-class", type=int, default=1000, help="drawings per digit (10 digits)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("outputs/bench_import"))
    p.add_argument("--error-every", type=int, default=1, help="fit error on every n-th drawing (1: all)")
    p.add_argument("--no-old", action="store_true", help="skip the previous fitter's run")
    p.add_argument("--resume-check", action="store_true", help="also kill an import halfway and resume it")
    args = p.parse_args()
    source = (args.shared / "mnist-strokes").resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out.resolve()
    runs = {"new": []} if args.no_old else {"old": ["--set", "fit.staircase_resample=0"], "new": []}
    print(f"{10 * args.per_class} MNIST pen-stroke drawings, {args.workers} workers; before: {load_line()}",
          flush=True)
    results = {}
    for name, extra in runs.items():
        results[name] = timed(source, out / f"{name}.npz", args.per_class, args.workers, extra)
        r = results[name]
        n = 10 * args.per_class
        r["rate"] = n / r["wall_s"]
        print(f"{name:>4}: {r['wall_s']:6.1f} s wall = {r['rate']:6.0f} drawings/s; {r['cpu_s']:6.1f} CPU s "
              f"= {n / r['cpu_s']:5.0f} drawings per CPU s; peak RSS {r['peak_rss_mib']:.0f} MiB; {load_line()}",
              flush=True)
    if "old" in results:
        o, n = results["old"], results["new"]
        print(f"new / old: {n['rate'] / o['rate']:.2f}x drawings/s (wall), {o['cpu_s'] / n['cpu_s']:.2f}x less CPU")
    bar = [ln for ln in results["new"]["stderr"].replace("\r", "\n").splitlines() if "fitting:" in ln]
    print(f"progress bar: {'ok' if bar and 'drawing/s' in bar[-1] else 'MISSING'} ({bar[-1].strip() if bar else ''})")
    margin = FitConfig().margin
    datasets = {k: dict(np.load(out / f"{k}.npz")) for k in results}
    drawings = originals(datasets["new"], source, margin)
    for k in results:
        if k != "new" and not np.array_equal(datasets[k]["source_ids"], datasets["new"]["source_ids"]):
            raise SystemExit(f"{k} and new fitted different drawings")
    errs = {k: fit_errors(d["beziers"], drawings, args.error_every, margin) for k, d in datasets.items()}
    for k, e in errs.items():
        print(f"fit error {k}: mean {e.mean():.3f} px, p95 {np.percentile(e, 95):.3f} px "
              f"(Chamfer vs the original polylines, {len(e)} drawings); 32 segments, no padding: "
              f"{padding_check(datasets[k]['beziers'])}")
    if "old" in errs:
        m = errs["new"].mean() / errs["old"].mean() - 1
        q = np.percentile(errs["new"], 95) / np.percentile(errs["old"], 95) - 1
        ok = abs(m) <= 0.05 and abs(q) <= 0.05
        print(f"fit error new vs old: mean {m:+.1%}, p95 {q:+.1%} ({'within' if ok else 'NOT within'} 5 %)")
    if args.resume_check:
        print("resume after SIGKILL:", resume_check(source, out / "resumed.npz", out / "new.npz", args.per_class,
                                                     args.workers), flush=True)
    print(f"after: {load_line()}")


if __name__ == "__main__":
    main()
