"""Would a self-supervised sketch encoder let the reward see the per-sketch tastes? (issue #13's untried input)

    python benchmarks/reward_encoder_probe.py --out runs/research/suite \\
        --data builtin=builtin:runs/research/base-builtin/model.pt

The issue proposes, besides the flow model's own states, "an encoder trained self-supervised on the data
set" as the reward's input. This script trains one and asks the questions of benchmarks/reward_ceiling.py
and benchmarks/reward_probe.py of it, on their pairs and annotators:

- **the encoder**: a transformer autoencoder over the 32 stroke tokens (control points and pen moves)
  with a 64-number bottleneck, trained to reconstruct ``--train-samples`` base samples (nothing about any
  taste: no labels, no answers, no scores). Base samples, not the data set, because the reward ranks the
  model's own drawings and they are unlimited; cached under ``OUT/<data>/``.
- **ceiling, exact scores** of ``--sketches`` base sketches, within class as in reward_ceiling.py: ridge on
  the bottleneck (``latent``), ridge on random Fourier features of it (``latent kernel``: a non-linear
  head), and the whole encoder fine-tuned with a linear head (``fine-tuned``, early stopping on the last
  fifth).
- **noisy answers** (the loop's regime): the encoder fine-tuned as a Bradley-Terry model on the first N
  noisy answers of reward_probe.py (10 % flips, ties left out), agreement with the noise-free choice on the
  same 1,000 test pairs. Compare with reward_probe.py's figure for the product's reward at the same N
  (``--variants default --pairs 500 1000``).

Deterministic for a given machine: fixed seeds and one thread. Writes
``OUT/<data>/reward_encoder_probe_s<seed>[_<annotators>].json``. About 25 minutes per data set on one core.
"""
from __future__ import annotations

import copy
import io
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preference_suite import sample, stable_int  # noqa: E402
from reward_ceiling import agreement, ridge_ranker, within_class  # noqa: E402
from reward_probe import noisy_answers, probe_parser, probe_setup  # noqa: E402

from driftsketch.fileio import atomic_write_bytes, atomic_write_text  # noqa: E402


def stroke_tokens(x: torch.Tensor) -> torch.Tensor:
    """``(B, 32, 10)``: every segment's 8 control coordinates and the pen move from the previous segment's end.
    (benchmarks/annotators.py's foreign network reads the same tokens; written again on purpose, so that no
    reward candidate shares code with an annotator.)"""
    tok = x.reshape(len(x), 32, 8)
    move = torch.cat([torch.zeros_like(tok[:, :1, :2]), tok[:, 1:, :2] - tok[:, :-1, 6:]], dim=1)
    return torch.cat([tok, move], dim=2)


class SketchAutoencoder(nn.Module):
    """Transformer encoder -> a ``latent``-number code (from a summary token) -> transformer decoder that
    rebuilds all 32 segments from the code and their positions."""

    def __init__(self, dim: int = 64, latent: int = 64, depth: int = 2, heads: int = 4):
        super().__init__()

        def blocks() -> nn.TransformerEncoder:
            layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, 0.0, batch_first=True, norm_first=True)
            return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.embed, self.summary = nn.Linear(10, dim), nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.randn(33, dim) * 0.02)
        self.encoder, self.to_code = blocks(), nn.Linear(dim, latent)
        self.from_code, self.query = nn.Linear(latent, dim), nn.Parameter(torch.randn(32, dim) * 0.02)
        self.decoder, self.out = blocks(), nn.Linear(dim, 8)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 32, 4, 2)`` -> the code ``(B, latent)``."""
        h = self.embed(stroke_tokens(x))
        h = torch.cat([self.summary.expand(len(h), -1, -1), h], dim=1) + self.position
        return self.to_code(self.encoder(h)[:, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.query.unsqueeze(0) + self.from_code(self.encode(x)).unsqueeze(1)
        return self.out(self.decoder(q)).reshape(-1, 32, 4, 2)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [*self.embed.parameters(), self.summary, self.position, *self.encoder.parameters(),
                *self.to_code.parameters()]


def train_autoencoder(x: np.ndarray, steps: int, seed: int) -> SketchAutoencoder:
    """Reconstruct ``x`` (inputs jittered by 0.01) with Adam and a one-cycle schedule, batches of 128."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = SketchAutoencoder()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps)
    xt, t0 = torch.from_numpy(np.asarray(x, np.float32)), time.perf_counter()
    for step in range(steps):
        xb = xt[torch.randint(0, len(xt), (128,), generator=gen)]
        loss = ((net(xb + 0.01 * torch.randn(xb.shape, generator=gen)) - xb) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == steps - 1:
            print(f"  autoencoder step {step}/{steps}: mse {loss.item():.5f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    return net.eval()


def cached_autoencoder(base, name: str, n_classes: int, args) -> SketchAutoencoder:
    """The encoder of ``base``'s samples, trained once and cached under ``OUT/<data>/``."""
    path = Path(args.out) / name / f"encoder_{args.train_samples}x{args.encoder_steps}_{base.checkpoint_id}.pt"
    if not path.is_file():
        labels = np.arange(args.train_samples) % n_classes
        x = sample(base, labels, stable_int("encoder-train", name), args)[0]
        buf = io.BytesIO()
        torch.save(train_autoencoder(x, args.encoder_steps, args.seed).state_dict(), buf)
        atomic_write_bytes(path, buf.getvalue())  # a killed run leaves no half-written cache
    net = SketchAutoencoder()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


@torch.no_grad()
def codes(net: SketchAutoencoder, x: np.ndarray) -> np.ndarray:
    xt = torch.from_numpy(np.asarray(x, np.float32))
    return torch.cat([net.encode(xt[i:i + 512]) for i in range(0, len(xt), 512)]).double().numpy()


def fourier_features(z: np.ndarray, mu: np.ndarray, sd: np.ndarray, width: int = 2048, seed: int = 0) -> np.ndarray:
    """``cos(standardised z @ W + b)``: random features of a Gaussian kernel on the code."""
    rng = np.random.default_rng(seed)
    w, b = rng.normal(size=(z.shape[1], width)) / np.sqrt(z.shape[1]), rng.uniform(0, 2 * np.pi, width)
    return np.cos(((z - mu) / sd) @ w + b)


def fine_tune(ae: SketchAutoencoder, batch_loss: Callable, validate: Callable, steps: int, seed: int,
              extra: tuple[nn.Parameter, ...] = ()):
    """A copy of the encoder plus a linear head on its code, trained on ``batch_loss(score_fn, gen)`` (encoder
    at lr 3e-4, head and ``extra`` at 3e-3), kept at the step (every 50) with the best ``validate(score_fn)``;
    returns the scoring function ``np (N, 32, 4, 2) -> (N,)``."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net, head = copy.deepcopy(ae), nn.Linear(ae.to_code.out_features, 1)
    opt = torch.optim.AdamW([{"params": net.encoder_parameters(), "lr": 3e-4},
                             {"params": [*head.parameters(), *extra], "lr": 3e-3}], weight_decay=1e-2)

    def score(xs: torch.Tensor) -> torch.Tensor:
        return head(net.encode(xs))[:, 0]
    best, kept = -np.inf, None
    for step in range(steps):
        net.train()
        loss = batch_loss(score, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 49:
            net.eval()
            with torch.no_grad():
                v = validate(score)
            if v > best:
                best, kept = v, (copy.deepcopy(net.state_dict()), copy.deepcopy(head.state_dict()))
    net.load_state_dict(kept[0])
    head.load_state_dict(kept[1])
    net.eval()

    @torch.no_grad()
    def score_np(x: np.ndarray) -> np.ndarray:
        return score(torch.from_numpy(np.asarray(x, np.float32))).numpy()
    return score_np


def exact_score_ranker(ae: SketchAutoencoder, x: np.ndarray, target: np.ndarray, labels: np.ndarray, steps: int,
                       seed: int):
    """Fine-tuned to the within-class score (plus a free offset per class); validated by the within-class
    correlation on the last fifth."""
    xt, yt = torch.from_numpy(np.asarray(x, np.float32)), torch.from_numpy(np.asarray(labels, np.int64))
    tw = torch.tensor(within_class(target, labels) / (target.std() + 1e-12), dtype=torch.float32)
    offset, n_fit = nn.Parameter(torch.zeros(int(labels.max()) + 1)), len(xt) * 4 // 5  # class means

    def batch_loss(score, gen):
        idx = torch.randint(0, n_fit, (128,), generator=gen)
        return ((score(xt[idx]) + offset[yt[idx]] - tw[idx]) ** 2).mean()

    def validate(score):
        p = within_class(score(xt[n_fit:]).numpy(), labels[n_fit:])
        return float(np.corrcoef(p, tw[n_fit:].numpy())[0, 1])
    return fine_tune(ae, batch_loss, validate, steps, seed, extra=(offset,))


def pair_ranker(ae: SketchAutoencoder, winners: np.ndarray, losers: np.ndarray, steps: int, seed: int):
    """Fine-tuned as a Bradley-Terry model on (winner, loser) pairs, batches of 64; validated by the share
    of the last fifth's answers it agrees with."""
    wt, lt = torch.from_numpy(np.asarray(winners, np.float32)), torch.from_numpy(np.asarray(losers, np.float32))
    n_fit = len(wt) * 4 // 5

    def batch_loss(score, gen):
        idx = torch.randint(0, n_fit, (64,), generator=gen)
        return -nn.functional.logsigmoid(score(wt[idx]) - score(lt[idx])).mean()

    def validate(score):
        return float((score(wt[n_fit:]) > score(lt[n_fit:])).float().mean())
    return fine_tune(ae, batch_loss, validate, steps, seed)


def ceiling_row(ae: SketchAutoencoder, ann, train: tuple, test: tuple, truth: tuple, n: int, args) -> dict:
    """Agreement on the test pairs (noise-free scores ``truth``) of rankers fit to the exact scores of the first
    ``n`` training sketches."""
    (x, y), (ta, tb, _), (sa, sb) = train, test, truth
    s = ann.score(x[:n], y[:n])
    z, za, zb = codes(ae, x[:n]), codes(ae, ta), codes(ae, tb)
    mu, sd = z.mean(axis=0), z.std(axis=0) + 1e-9
    row = {}
    for key, f in (("latent", lambda v: v), ("latent kernel", lambda v: fourier_features(v, mu, sd))):
        w, scale = ridge_ranker(f(z), s, y[:n])
        row[f"{key}@{n}"] = agreement(f(za) / scale @ w, f(zb) / scale @ w, sa, sb)
    rank = exact_score_ranker(ae, x[:n], s, y[:n], args.tune_steps, args.seed)
    row[f"fine-tuned@{n}"] = agreement(rank(ta), rank(tb), sa, sb)
    return row


def noisy_row(ae: SketchAutoencoder, ann, name: str, tr: tuple, te: tuple, truth: tuple, args) -> dict:
    """Agreement of the Bradley-Terry fine-tune on the first N noisy answers, for every ``--pairs`` N."""
    winners, losers, _ = noisy_answers(ann, name, tr, args.seed)
    sa, sb = truth
    row = {}
    for n in args.pairs:
        rank = pair_ranker(ae, winners[:n], losers[:n], args.tune_steps, args.seed)
        row[f"noisy pairs@{n}"] = agreement(rank(te[0]), rank(te[1]), sa, sb)
    return row


def main(argv=None) -> None:
    p = probe_parser(__doc__)
    p.add_argument("--train-samples", type=int, default=8000, help="base samples the autoencoder rebuilds")
    p.add_argument("--encoder-steps", type=int, default=3000)
    p.add_argument("--tune-steps", type=int, default=600, help="fine-tuning steps of every ranker")
    p.add_argument("--sketches", type=int, nargs="+", default=[2000], help="exact scores (at most 2,000)")
    p.add_argument("--pairs", type=int, nargs="+", default=[500, 1000], help="noisy answers (at most 1,000)")
    args = p.parse_args(argv)
    name, setup, base, tr, te = probe_setup(args, 1000)
    ae = cached_autoencoder(base, name, len(setup.class_names), args)
    train = np.concatenate([tr[0], tr[1]]), np.concatenate([tr[2], tr[2]])
    results = {}
    for ann in setup.annotators:
        if args.annotators and ann.name not in args.annotators:
            continue
        t0, row = time.perf_counter(), {}
        truth = ann.score(te[0], te[2]), ann.score(te[1], te[2])
        for n in args.sketches:
            row.update(ceiling_row(ae, ann, train, te, truth, n, args))
        row.update(noisy_row(ae, ann, name, tr, te, truth, args))
        results[ann.name] = {k: round(v, 3) for k, v in row.items()}
        print(f"{ann.name:13s} " + "  ".join(f"{k} {v:.2f}" for k, v in row.items())
              + f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    tag = "_" + "_".join(args.annotators) if args.annotators else ""
    atomic_write_text(Path(args.out) / name / f"reward_encoder_probe_s{args.seed}{tag}.json",
                      json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
