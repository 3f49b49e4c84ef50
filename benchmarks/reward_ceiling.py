"""How far can a reward on these inputs go, even with perfect labels? The ceiling behind the per-sketch tastes.

    python benchmarks/reward_ceiling.py --out runs/research/suite \\
        --data builtin=builtin:runs/research/base-builtin/model.pt --sketches 500 1000 2000

``benchmarks/reward_probe.py`` fits the product's reward on *noisy answers*. This script removes the noise
and the pairs: for every annotator of the preference suite it fits a ridge regression from each input set
to the annotator's *noise-free score* of N base sketches, within class (a pair always shares its class,
so the score's class means and the inputs' class means are removed), and reports how often that
regression orders the 1,000 test pairs of reward_probe as the annotator does. A reward fit on noisy pairs
cannot beat this figure by much, so it says whether an annotator is out of reach of the *inputs*, not of
the number of labels. Also printed: the share of the score's variance that lies within classes.

Input sets: ``hand`` (the seven hand-made features), ``flow`` (the flow embedding the reward reads,
configs/dpo.yaml ``amplify.reward.embedding_t``), ``raster`` (the reward classifier's penultimate CNN
features), ``flow2`` (second-order pooling: the covariance over the 32 stroke tokens of every block's
states at t = 1), ``local`` (random ReLU features of every segment with its neighbours, pooled over
segments: generic local geometry, read from the control points, not from the model), ``shape`` (random
ReLU features of every segment's midpoint around the sketch's centre, pooled: generic global shape), and
``flow-tokens`` (a small MLP on every token's states, averaged over tokens: a non-linear head, trained by
gradient descent with a fixed seed). The L2 strength is chosen on the last
fifth of the N sketches, then refit on all N.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preference_suite import data_arg, prepare  # noqa: E402
from reward_probe import probe_pairs, probe_parser  # noqa: E402

from dpo.config import load_dpo_config  # noqa: E402
from dpo.reward import flow_embedding, local_geometry_features, shape_features, sketch_features  # noqa: E402
from dpo.reward import token_states as reward_token_states  # noqa: E402
from driftsketch.checkpoint import load_model  # noqa: E402
from driftsketch.evaluation import SketchClassifier  # noqa: E402
from driftsketch.fileio import atomic_write_text  # noqa: E402

RIDGE_GRID = [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0]
LINEAR_INPUTS = ["hand", "flow", "raster", "flow2", "local", "shape"]
LOCAL_FEATURES = 4096  # random ReLU features (x2 poolings) of dpo/reward.py local_geometry_features
SHAPE_FEATURES = 1024  # ... of dpo/reward.py shape_features


@torch.no_grad()
def token_states(model, beziers: np.ndarray, labels: np.ndarray, t: float = 1.0) -> torch.Tensor:
    """``(N, 32, depth * D)``: every block's token states for the sketches noised to ``t`` (the reward's noise)."""
    model.eval()
    return torch.cat([torch.cat(reward_token_states(model, beziers[i:i + 512], labels[i:i + 512], t), dim=2)
                      for i in range(0, len(beziers), 512)])


def second_order(states: torch.Tensor, depth: int) -> np.ndarray:
    """Upper triangle of the token covariance of every block: ``(N, depth * D (D + 1) / 2)``."""
    cols = []
    for h in states.chunk(depth, dim=2):
        c = h - h.mean(dim=1, keepdim=True)
        cov = c.transpose(1, 2) @ c / h.shape[1]
        iu = torch.triu_indices(cov.shape[1], cov.shape[1])
        cols.append(cov[:, iu[0], iu[1]])
    return torch.cat(cols, dim=1).double().numpy()


def inputs(name: str, beziers: np.ndarray, labels: np.ndarray, model, clf: SketchClassifier, cfg) -> np.ndarray:
    """One input set of the sketches, ``(N, F)`` float64."""
    if name == "hand":
        return sketch_features(clf, beziers, labels, cfg)
    if name == "flow":
        return flow_embedding(model, beziers, labels, cfg.embedding_t)
    if name == "raster":
        return clf.features(beziers).astype(np.float64)
    if name == "local":
        return local_geometry_features(beziers, LOCAL_FEATURES)
    if name == "shape":
        return shape_features(beziers, SHAPE_FEATURES)
    assert name == "flow2", name
    return second_order(token_states(model, beziers, labels), model.config.depth)


def within_class(v: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``v`` minus its mean over the rows of the same class."""
    v = np.array(v, dtype=np.float64)
    for c in np.unique(labels):
        v[labels == c] -= v[labels == c].mean(axis=0)
    return v


def ridge_ranker(x: np.ndarray, target: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(weights, column scale) of a within-class ridge regression, L2 chosen on the last fifth."""
    xw, tw = within_class(x, labels), within_class(target, labels)
    scale = xw.std(axis=0) + 1e-9
    z = xw / scale
    n_fit = len(z) * 4 // 5

    def solve(rows: slice, l2: float) -> np.ndarray:
        a, t = z[rows], tw[rows]
        if len(a) < a.shape[1]:  # the dual form: an N x N system instead of F x F
            return a.T @ np.linalg.solve(a @ a.T + l2 * len(a) * np.eye(len(a)), t)
        return np.linalg.solve(a.T @ a + l2 * len(a) * np.eye(a.shape[1]), a.T @ t)

    err = [((z[n_fit:] @ solve(slice(0, n_fit), l2) - tw[n_fit:]) ** 2).mean() for l2 in RIDGE_GRID]
    return solve(slice(None), RIDGE_GRID[int(np.argmin(err))]), scale


def mlp_ranker(states: torch.Tensor, target: np.ndarray, labels: np.ndarray, seed: int):
    """A per-token MLP averaged over tokens, fit to the within-class score (fixed seed, 1,500 Adam steps)."""
    torch.manual_seed(seed)
    mu, sd = states.mean(dim=(0, 1)), states.std(dim=(0, 1)) + 1e-6
    xs = (states - mu) / sd
    tw = torch.tensor(within_class(target, labels) / (target.std() + 1e-12), dtype=torch.float32)
    y = torch.from_numpy(np.asarray(labels, np.int64))
    head = torch.nn.Sequential(torch.nn.Linear(xs.shape[2], 64), torch.nn.GELU(), torch.nn.Linear(64, 1))
    offset = torch.nn.Embedding(int(y.max()) + 1, 1)  # the class means, which pairs never compare
    opt = torch.optim.AdamW([*head.parameters(), *offset.parameters()], lr=3e-3, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(1500):
        idx = torch.randint(0, len(xs), (256,), generator=gen)
        loss = ((head(xs[idx]).mean(dim=(1, 2)) + offset(y[idx])[:, 0] - tw[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    @torch.no_grad()
    def score(s: torch.Tensor) -> np.ndarray:
        return head((s - mu) / sd).mean(dim=(1, 2)).numpy()
    return score


def agreement(score_a: np.ndarray, score_b: np.ndarray, true_a: np.ndarray, true_b: np.ndarray) -> float:
    """Share of the test pairs with a clear noise-free choice that the ranking orders the same way."""
    clear = true_a != true_b
    return float(((score_a > score_b) == (true_a > true_b))[clear].mean())


def main(argv=None) -> None:
    p = probe_parser(__doc__)
    p.add_argument("--sketches", type=int, nargs="+", default=[500, 1000, 2000],
                   help="training sketches (at most twice reward_probe's --pairs, which is 1,000)")
    p.add_argument("--inputs", nargs="+", default=LINEAR_INPUTS + ["flow-tokens"],
                   choices=LINEAR_INPUTS + ["flow-tokens"])
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    name, spec, base_path = data_arg(args.data)
    setup = prepare(name, spec, base_path, Path(args.out), args)
    model, clf = load_model(base_path), SketchClassifier.load(setup.reward_classifier)
    cfg = load_dpo_config().amplify.reward
    tr, te = probe_pairs(model, name, 1000, len(setup.class_names), args)
    x, y = np.concatenate([tr[0], tr[1]]), np.concatenate([tr[2], tr[2]])
    feats = {k: (inputs(k, x, y, model, clf, cfg), inputs(k, te[0], te[2], model, clf, cfg),
                 inputs(k, te[1], te[2], model, clf, cfg)) for k in args.inputs if k in LINEAR_INPUTS}
    if "flow-tokens" in args.inputs:
        feats["flow-tokens"] = tuple(token_states(model, b, lab) for b, lab in ((x, y), (te[0], te[2]), (te[1], te[2])))
    results = {}
    for ann in setup.annotators:
        if args.annotators and ann.name not in args.annotators:
            continue
        s, sa, sb = ann.score(x, y), ann.score(te[0], te[2]), ann.score(te[1], te[2])
        row = {"within_class_variance_share": round(float(within_class(s, y).var() / s.var()), 3)}
        for k, (f, fa, fb) in feats.items():
            for n in args.sketches:
                if k == "flow-tokens":
                    rank = mlp_ranker(f[:n], s[:n], y[:n], args.seed)
                    row[f"{k}@{n}"] = round(agreement(rank(fa), rank(fb), sa, sb), 3)
                else:
                    w, scale = ridge_ranker(f[:n], s[:n], y[:n])
                    row[f"{k}@{n}"] = round(agreement(fa / scale @ w, fb / scale @ w, sa, sb), 3)
        results[ann.name] = row
        print(f"{ann.name:13s} " + "  ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
    atomic_write_text(Path(args.out) / name / f"reward_ceiling_s{args.seed}.json", json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
