"""Flow-DPO fine-tuning loop: ``train_dpo(cfg) -> DPOResult``.

    from dpo.config import load_dpo_config
    from dpo.trainer import train_dpo
    cfg = load_dpo_config(overrides=["base_checkpoint=runs/base/model.pt", "epochs=5"])
    result = train_dpo(cfg)
    result.checkpoint_path      # CHECKPOINT_DIR/model.pt, a normal DriftSketch checkpoint (parent = base)

Leaves ``CHECKPOINT_DIR/model.pt`` (the best epoch by held-out preference accuracy) and ``last.pt``
(policy, optimizer, frozen reference and best state: what ``resume=True`` continues from).
"""
from __future__ import annotations

import copy
import fnmatch
import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from tqdm import tqdm

from dpo.amplify import amplify, fit_on_dataset
from dpo.anchor import load_anchor
from dpo.config import DPOConfig, RewardConfig
from dpo.dataset import PreferenceDataset
from driftsketch.split import unit_hash
from dpo.loss import flow_dpo_loss
from dpo.records import PreferenceRecord
from dpo.reward import RewardModel
from dpo.store import PreferenceStore
from driftsketch.augment import AugmentConfig, shared_random_affine
from driftsketch.checkpoint import (
    CheckpointError,
    build_model,
    load_checkpoint,
    save_checkpoint,
)
from driftsketch.config import replace_config, to_dict
from driftsketch.device import numerics_fingerprint, require_device
from driftsketch.errors import DriftSketchError, check_out_dir
from driftsketch.flow import cfm_loss
from driftsketch.evaluation.classifier import SketchClassifier
from driftsketch.tracking import RunLogger


class DPOError(DriftSketchError, ValueError):
    """Flow-DPO cannot start or resume (too few pairs, mismatched checkpoints, ...)."""


@dataclass
class DPOResult:
    """What a fine-tune produced: the checkpoint and the per-epoch metrics."""

    checkpoint_path: Path
    checkpoint_id: str
    parent_id: str
    history: list[dict] = field(default_factory=list)  # one dict per epoch (train means + held-out)
    best_epoch: int = 0
    stopped_early: bool = False
    data_summary: dict = field(default_factory=dict)
    record_ids: list[str] = field(default_factory=list)  # records the training pairs came from
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # reward_fit, amplify (sampling + ranking), train


class _Shuffled(Dataset):
    """Control: each pair's winner and loser swapped with probability 1/2 (fixed per pair and seed)."""

    def __init__(self, base: PreferenceDataset, seed: int):
        self.base = base
        self.swap = [unit_hash(f"shuffle:{seed}:{i}") < 0.5 for i in range(len(base))]

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.base[i])
        if self.swap[i]:
            for a, b in (("winner_beziers", "loser_beziers"), ("winner_noise", "loser_noise")):
                if a in item:
                    item[a], item[b] = item[b], item[a]
        return item


def _frozen(model: torch.nn.Module) -> torch.nn.Module:
    return model.eval().requires_grad_(False)


def load_models(cfg: DPOConfig) -> tuple[torch.nn.Module, torch.nn.Module, dict]:
    """(policy, frozen reference, base checkpoint dict); CheckpointError / DPOError before any training."""
    if not cfg.base_checkpoint:
        raise DPOError("base_checkpoint is required (--base-checkpoint PATH)")
    base = load_checkpoint(cfg.base_checkpoint)
    policy = build_model(base, where=cfg.base_checkpoint).to(cfg.device)
    if cfg.reference_checkpoint and cfg.reference_checkpoint != cfg.base_checkpoint:
        ref_ckpt = load_checkpoint(cfg.reference_checkpoint)
        ref = build_model(ref_ckpt, where=cfg.reference_checkpoint).to(cfg.device)
        if ref.class_names != policy.class_names or ref.config.codec != policy.config.codec:
            raise DPOError(f"reference {cfg.reference_checkpoint} has other classes or codec than the base "
                           f"{cfg.base_checkpoint}")
    else:
        ref = copy.deepcopy(policy)
    select_trainable(policy, cfg.trainable)
    return policy.train(), _frozen(ref), base


def select_trainable(model: torch.nn.Module, patterns: list[str]) -> int:
    """Freeze every parameter whose name matches none of the glob ``patterns`` (empty: train all);
    returns the number of trainable values. DPOError when a pattern matches nothing."""
    if not patterns:
        return sum(p.numel() for p in model.parameters())
    names = [n for n, _ in model.named_parameters()]
    for pat in patterns:
        if not any(fnmatch.fnmatchcase(n, pat) for n in names):
            raise DPOError(f"trainable: pattern {pat!r} matches no parameter; names look like {names[:6]}")
    count = 0
    for name, param in model.named_parameters():
        param.requires_grad_(any(fnmatch.fnmatchcase(name, pat) for pat in patterns))
        count += param.numel() if param.requires_grad else 0
    return count


def preference_dataset(cfg: DPOConfig, class_names: list[str],
                       records: list[PreferenceRecord] | None = None) -> PreferenceDataset:
    """The pairs of ``records`` (default: every record in ``cfg.preference_dir``) under ``cfg``'s rules;
    :class:`DPOError` when that folder does not exist (a typo would otherwise read as "0 usable pairs")."""
    if records is None:
        check_preference_dir(cfg.preference_dir)
    return PreferenceDataset(PreferenceStore(cfg.preference_dir), class_names, min_margin=cfg.min_margin,
                             same_checkpoint=cfg.same_checkpoint, max_synthesised=cfg.max_synthesised,
                             use_noise=cfg.use_stored_noise, seed=cfg.seed, records=records,
                             annotators=cfg.annotators)


def check_preference_dir(path: str | Path) -> Path:
    """``path`` as a preference store root: :class:`DPOError` when it is missing or not a folder."""
    path = Path(path)
    if not path.exists():
        raise DPOError(f"preference folder {path} does not exist (preference_dir / --preference-dir; "
                       "`driftsketch-labelstudio pull` creates it)")
    if not path.is_dir():
        raise DPOError(f"preference folder {path} is a file, expected the store's folder (preference_dir)")
    return path


def build_datasets(cfg: DPOConfig, class_names: list[str],
                   records: list[PreferenceRecord] | None = None) -> tuple[PreferenceDataset, PreferenceDataset]:
    """(train, held-out) preference datasets; DPOError when there are too few usable training pairs."""
    full = preference_dataset(cfg, class_names, records)
    train, held = full.split(cfg.holdout_fraction, seed=cfg.seed)
    if len(train) < cfg.min_pairs:
        raise DPOError(f"only {len(train)} usable training pairs in {cfg.preference_dir} (min_pairs="
                       f"{cfg.min_pairs}); data: {full.summary()}")
    return train, held


def _batch(item: dict, device: str, null_class: int, class_dropout: float, gen: torch.Generator,
           augment: AugmentConfig | None = None):
    x_w, x_l = item["winner_beziers"], item["loser_beziers"]
    if augment is not None and augment.enabled:  # the same small affine map for winner and loser
        x_w, x_l = shared_random_affine(x_w, x_l, cfg=augment, generator=gen)
    x_w, x_l = x_w.to(device), x_l.to(device)
    y = item["class_label"].to(device)
    if class_dropout > 0:  # also tune the unconditional branch that classifier-free guidance mixes in
        drop = torch.rand(y.shape, generator=gen) < class_dropout
        y = torch.where(drop.to(device), torch.full_like(y, null_class), y)
    x0 = (item["winner_noise"].to(device), item["loser_noise"].to(device)) if "winner_noise" in item else None
    return x_w, x_l, y, x0, item["target"].to(device), item["weight"].to(device)


def train_times(batch: int, num_t: int, t_power: float, gen: torch.Generator,
                t_min: float = 0.0) -> torch.Tensor | None:
    """Training times ``(batch, num_t)`` = ``t_min + (1 - t_min) u ** t_power``; ``None`` for the plain
    ``U(0, 1)`` (then the loss draws its own). ``t_min > 0`` drops the early times where a pair's two
    points ``xt`` are both nearly pure noise: there the loss only shifts the class's mean sketch toward
    the mean winner-minus-loser difference, which over a few dozen pairs is mostly chance."""
    if t_power <= 0:
        raise ValueError(f"t_power must be > 0, got {t_power}")
    if not 0.0 <= t_min < 1.0:
        raise ValueError(f"t_min must lie in [0, 1), got {t_min}")
    if t_power == 1.0 and t_min == 0.0:
        return None
    return t_min + (1.0 - t_min) * torch.rand((batch, num_t), generator=gen) ** t_power


class ReplayedForward:
    """A frozen network whose outputs are remembered by their inputs. The held-out pairs are evaluated
    with the same fixed noise and times after every epoch, so the frozen reference runs once per
    input instead of once per epoch (a sixth of a round's network evaluations)."""

    def __init__(self, net: torch.nn.Module):
        self.net = net
        self._outputs: dict[bytes, torch.Tensor] = {}

    def __getattr__(self, name: str):
        return getattr(self.__dict__["net"], name)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        key = hashlib.sha1(b"".join(a.detach().cpu().numpy().tobytes() for a in (x, t, labels))).digest()
        if key not in self._outputs:
            self._outputs[key] = self.net(x, t, labels).detach()
        return self._outputs[key]


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether two networks hold identical parameters and buffers (then their outputs are identical)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@torch.no_grad()
def evaluate_pairs(model, ref, data: Dataset, cfg: DPOConfig) -> dict[str, float]:
    """Mean Flow-DPO metrics over ``data`` with fixed noise and times (comparable across epochs).
    ``ref`` may be a :class:`ReplayedForward`; a model identical to it (epoch 0) is not run again."""
    if len(data) == 0:
        return {}
    gen = torch.Generator().manual_seed(cfg.seed + cfg.eval_seed_offset)
    was = model.training
    model.eval()
    net = ref if same_weights(model, ref) else model
    totals: dict[str, float] = {}
    for item in DataLoader(data, batch_size=max(cfg.batch_size, 64)):
        x_w, x_l, y, x0, target, weight = _batch(item, cfg.device, model.null_class, 0.0, gen)
        _, m = flow_dpo_loss(net, ref, x_w, x_l, y, beta=cfg.beta, x0=x0, num_t=cfg.eval_num_t,
                             cfg_scale=cfg.loss_cfg_scale, generator=gen, target=target, weight=weight)
        for k, v in m.items():
            totals[k] = totals.get(k, 0.0) + v * len(y)
    model.train(was)
    return {k: v / len(data) for k, v in totals.items()}


def heldout_accuracy(candidate, reference, records: list[PreferenceRecord], cfg: DPOConfig) -> dict[str, float]:
    """Implicit preference accuracy of ``candidate`` against ``reference`` on the held-out split of
    ``records`` (the split :func:`train_dpo` held out with ``cfg``): ``{heldout_accuracy, heldout_pairs}``,
    the accuracy NaN when nothing is held out. What the promotion gate reads."""
    _, held = build_datasets(replace_config(cfg, min_pairs=0), candidate.class_names, records)
    m = evaluate_pairs(candidate, reference.requires_grad_(False), held, cfg)
    return {"heldout_accuracy": float(m.get("implicit_accuracy", math.nan)), "heldout_pairs": float(len(held))}


class _Run:
    """Mutable training state, saved whole into last.pt for resuming."""

    def __init__(self, cfg: DPOConfig, policy, ref, base: dict):
        self.cfg, self.policy, self.ref, self.base = cfg, policy, ref, base
        self.anchor = load_anchor(cfg.anchor, policy.class_names)
        self.ref_heldout = ReplayedForward(ref)  # the held-out evaluation's fixed inputs repeat every epoch
        tuned = [p for p in policy.parameters() if p.requires_grad]  # all, unless cfg.trainable narrows it
        self.opt = torch.optim.AdamW(tuned, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.epoch, self.step, self.history = 0, 0, []
        self.best: dict = {"epoch": 0, "score": None, "state": None}
        self.bad_epochs = 0

    def save_last(self, path: Path, dataset_id: str) -> None:
        extra = {"dpo": {"reference_state": self.ref.state_dict(), "epoch": self.epoch, "history": self.history,
                         "best": self.best, "bad_epochs": self.bad_epochs, "config": to_dict(self.cfg),
                         "base_id": self.base["id"]}}
        save_checkpoint(path, self.policy, self.policy.class_names, step=self.step,
                        optimizer_state=self.opt.state_dict(), parent=self.base["id"], dataset_id=dataset_id,
                        extra=extra)

    def restore(self, path: Path) -> None:
        ckpt = load_checkpoint(path)
        dpo = (ckpt.get("extra") or {}).get("dpo")
        if not dpo or dpo.get("base_id") != self.base["id"]:
            raise DPOError(f"--resume: {path} is not a Flow-DPO run from base {self.base['id']}")
        try:
            self.policy.load_state_dict(ckpt["model_state_dict"])
            self.ref.load_state_dict(dpo["reference_state"])
            self.opt.load_state_dict(ckpt["optimizer_state_dict"])
            self.epoch, self.step, self.history = dpo["epoch"], ckpt["step"], list(dpo["history"])
            self.best, self.bad_epochs = dpo["best"], dpo["bad_epochs"]
        except Exception as exc:  # noqa: BLE001 - a damaged or foreign resume state, whatever torch raises
            raise DPOError(f"--resume: {path} cannot be resumed with this config ({type(exc).__name__}: "
                           f"{' '.join(str(exc).split())[:200]})") from None

    def score(self, held: dict) -> tuple[float, float]:
        """Early-stopping score: held-out accuracy, then lower held-out DPO loss."""
        return (held["implicit_accuracy"], -held["loss_dpo"]) if held else (0.0, 0.0)

    def end_epoch(self, row: dict, held: dict) -> bool:
        """Record the epoch; return True when early stopping says stop."""
        self.history.append(row)
        sc = self.score(held)
        off = not held or not self.cfg.early_stopping_patience  # no selection: the last epoch is kept
        if off or self.best["score"] is None or tuple(sc) > tuple(self.best["score"]):
            self.best = {"epoch": self.epoch, "score": list(sc),
                         "state": {k: v.detach().cpu().clone() for k, v in self.policy.state_dict().items()}}
            self.bad_epochs = 0
            return False
        self.bad_epochs += 1
        return bool(self.cfg.early_stopping_patience) and self.bad_epochs >= self.cfg.early_stopping_patience


def preference_dataset_id(records: list[PreferenceRecord]) -> str:
    """Stable id of a set of preference records (hash of their sorted ids)."""
    return "prefs-" + hashlib.sha256("\n".join(sorted(r.id for r in records)).encode()).hexdigest()[:16]


def train_dpo(cfg: DPOConfig, *, records: list[PreferenceRecord] | None = None, resume: bool = False,
              progress: bool = True) -> DPOResult:
    """Fine-tune ``cfg.base_checkpoint`` on the store's preferences (or on ``records``) with Flow-DPO.

    All checks (checkpoint kind, classes, number of pairs) run before the first step.
    """
    t_start = time.perf_counter()
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    require_device(cfg.device)
    torch.manual_seed(cfg.seed)
    out = check_out_dir(cfg.checkpoint_dir, "checkpoint_dir (--checkpoint-dir)")
    policy, ref, base = load_models(cfg)
    train, held = build_datasets(cfg, policy.class_names, records)
    out.mkdir(parents=True, exist_ok=True)
    pairs, summary = train, train.summary()
    if cfg.amplify.enabled:
        pairs, held, summary["amplify"] = amplified_pairs(cfg, policy, train, held, out, progress)
    train_data: Dataset = _Shuffled(pairs, cfg.seed) if cfg.shuffle_labels else pairs
    ds_id = preference_dataset_id(train.records)
    run = _Run(cfg, policy, ref, base)
    if resume:
        if not (out / "last.pt").is_file():
            raise CheckpointError(f"--resume: no {out / 'last.pt'} to resume from")
        run.restore(out / "last.pt")
    logger = RunLogger(cfg.wandb, cfg.wandb_project, out, to_dict(cfg), job_type="dpo")
    tqdm.write(f"flow-dpo: {len(train_data)} training pairs, {len(held)} held out; data: {summary}")
    if run.epoch == 0:
        run.history.append(_epoch_row(0, {}, evaluate_pairs(policy, run.ref_heldout, held, cfg)))
    stopped = _epochs(run, train_data, held, logger, progress, out, ds_id)
    result = _finish(run, out, ds_id, summary, train.records, stopped)
    logger.finish()
    result.seconds = time.perf_counter() - t_start
    amp = summary.get("amplify") or {}
    result.timings = {"reward_fit": amp.get("reward_fit_s", 0.0), "amplify": amp.get("amplify_s", 0.0)}
    result.timings["train"] = result.seconds - sum(result.timings.values())
    return result


def reward_classifier(path: str, class_names: list[str]) -> SketchClassifier:
    """The classifier behind the reward features; DPOError when missing or trained on other classes."""
    if not Path(path).is_file():
        raise DPOError(f"amplify.reward.classifier: no classifier at {path} (train one with driftsketch-eval "
                       "train-classifier, or --set amplify.enabled=false)")
    classifier = SketchClassifier.load(path)
    if classifier.class_names != class_names:
        raise DPOError(f"amplify.reward.classifier {path} knows classes {classifier.class_names}, the model "
                       f"{class_names}")
    return classifier


def reward_datasets(cfg: DPOConfig, class_names: list[str], train: PreferenceDataset,
                    held: PreferenceDataset) -> tuple[PreferenceDataset, PreferenceDataset]:
    """(fit, held-out) human pairs of the reward model: ``amplify.reward.fit_on: all`` fits on every pair in
    the store except the groups of the trainer's held-out pairs (the reward does not depend on the model,
    so every other stored pair helps); ``training`` fits on this run's training pairs. Either way at most
    ``amplify.reward.max_pairs`` of them, those answered last."""
    reward = cfg.amplify.reward
    fit = preference_dataset(cfg, class_names).excluding(held) if reward.fit_on == "all" else train
    return fit.newest(reward.max_pairs), held


def reward_encoder(path: str, model, model_path: str):
    """(flow model behind the reward's embedding, its checkpoint path): ``path``, or the model being tuned
    (a frozen copy, so training does not move the reward's inputs) when empty."""
    if not path:
        return _frozen(copy.deepcopy(model)), model_path
    encoder = load_checkpoint(path)
    built = build_model(encoder, where=path)
    if built.class_names != model.class_names:
        raise DPOError(f"amplify.reward.encoder {path} knows classes {built.class_names}, the model {model.class_names}")
    return _frozen(built), path


def reward_inputs(reward: RewardConfig, model, model_path: str) -> tuple[SketchClassifier | None, object, str]:
    """(classifier, encoder, encoder path) behind ``reward``'s features for tuning ``model`` (saved at
    ``model_path``): the classifier only when the hand-made features are on (:func:`reward_classifier`), the
    encoder as :func:`reward_encoder` picks it."""
    classifier = reward_classifier(reward.classifier, model.class_names) if reward.hand_features else None
    return (classifier, *reward_encoder(reward.encoder, model, model_path))


def fit_round_reward(cfg: DPOConfig, model, train: PreferenceDataset, held: PreferenceDataset) -> RewardModel:
    """The round's reward model for tuning ``model``: fitted on :func:`reward_datasets`' pairs, reading
    :func:`reward_inputs`' classifier and encoder, with its cross-validated accuracy (``metrics['cv_accuracy']``)
    and its accuracy on the held-out pairs."""
    classifier, encoder, encoder_path = reward_inputs(cfg.amplify.reward, model, cfg.base_checkpoint)
    fit, held = reward_datasets(cfg, model.class_names, train, held)
    return fit_on_dataset(classifier, fit, held, cfg.amplify.reward, encoder, encoder_path)


def amplified_pairs(cfg: DPOConfig, model, train: PreferenceDataset, held: PreferenceDataset, out: Path,
                    progress: bool) -> tuple[Dataset, PreferenceDataset, dict]:
    """Reward amplification (dpo/amplify.py): fit a reward model on the human pairs, check its
    cross-validated accuracy, and rank groups of ``model``'s samples (the policy before tuning) with it.

    Returns the training pairs (amplified + this run's human pairs, or the human pairs alone when the
    reward model fails its check), the held-out pairs for early stopping (a split of the amplified pairs;
    a few dozen noisy human pairs picked epoch 1 in docs/dpo.md run amp_def) and a summary.
    The reward model is checked on the same held-out pairs as the tuned model and never fits on them.
    """
    amp = cfg.amplify
    t0 = time.perf_counter()
    rm = fit_round_reward(cfg, model, train, held)
    rm.save(out / "reward_model.json")
    info = {"reward_model": str(out / "reward_model.json"), "weights": rm.describe(), **rm.metrics,
            "reward_fit_s": time.perf_counter() - t0}
    acc = rm.metrics["cv_accuracy"]
    tqdm.write(f"flow-dpo: reward model on {rm.metrics['train_pairs']} human pairs: cross-validated accuracy "
               f"{acc:.3f}, held-out {rm.metrics['heldout_accuracy']:.3f} on {rm.metrics['heldout_pairs']} pairs; "
               f"weights {rm.describe()}")
    if not acc >= amp.min_accuracy:  # NaN (too few pairs) fails too
        tqdm.write(f"flow-dpo: reward model accuracy {acc:.3f} < amplify.min_accuracy {amp.min_accuracy}: "
                   "training on the human pairs only")
        return train, held, {**info, "used": False}
    store = PreferenceStore(out / "amplified")
    session = f"amp-{model.checkpoint_id}-{rm.digest()}-s{amp.seed}"
    t0 = time.perf_counter()
    recs = amplify(model, rm, store, amp, session=session, progress=progress)
    info["amplify_s"] = time.perf_counter() - t0
    synthetic = PreferenceDataset(store, model.class_names, records=recs, use_noise=train.with_noise,
                                  soft_amplified=amp.soft_targets)
    syn_train, syn_held = synthetic.split(cfg.holdout_fraction, seed=cfg.seed)
    parts = [syn_train, train] if amp.keep_human_pairs else [syn_train]
    info.update(used=True, pairs=len(synthetic), heldout_amplified=len(syn_held), store=str(store.root))
    return ConcatDataset(parts), syn_held, info


def _epochs(run: _Run, train_data: Dataset, held: Dataset, logger: RunLogger, progress: bool, out: Path,
            ds_id: str) -> bool:
    cfg = run.cfg
    steps_per_epoch = -(-len(train_data) // cfg.batch_size)
    bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=run.epoch * steps_per_epoch, desc="flow-dpo",
               disable=not progress, dynamic_ncols=True)
    while run.epoch < cfg.epochs:
        run.epoch += 1
        means = _train_epoch(run, train_data, logger, bar)
        held_m = evaluate_pairs(run.policy, run.ref_heldout, held, cfg)
        row = _epoch_row(run.epoch, means, held_m)
        logger.log({k: v for k, v in row.items() if k != "epoch"}, run.step)
        tqdm.write(_epoch_line(row))
        stop = run.end_epoch(row, held_m)
        run.save_last(out / "last.pt", ds_id)
        if stop:
            tqdm.write(f"flow-dpo: early stop after epoch {run.epoch}: held-out accuracy has not improved for "
                       f"{cfg.early_stopping_patience} epochs (best: epoch {run.best['epoch']})")
            bar.close()
            return True
    bar.close()
    return False


def _train_epoch(run: _Run, data: Dataset, logger: RunLogger, bar: tqdm) -> dict[str, float]:
    cfg, policy = run.cfg, run.policy
    gen = torch.Generator().manual_seed(cfg.seed * cfg.epoch_seed_stride + run.epoch)
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True, generator=gen, drop_last=False)
    totals: dict[str, float] = {}
    n = 0
    policy.train()
    for item in loader:
        x_w, x_l, y, x0, target, weight = _batch(item, cfg.device, policy.null_class, cfg.class_dropout, gen,
                                                 cfg.augment)
        t = train_times(len(y), cfg.num_t, cfg.t_power, gen, cfg.t_min)
        loss, m = flow_dpo_loss(policy, run.ref, x_w, x_l, y, beta=cfg.beta, x0=x0, t=t, num_t=cfg.num_t,
                                sft_weight=cfg.sft_weight, cfg_scale=cfg.loss_cfg_scale, generator=gen,
                                target=target, weight=weight)
        if run.anchor is not None:
            loss = loss + cfg.anchor.weight * _anchor_loss(run, gen, m)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        m["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip))
        run.opt.step()
        run.step += 1
        bar.update(1)
        for k, v in m.items():
            totals[k] = totals.get(k, 0.0) + v * len(y)
        n += len(y)
        if run.step % cfg.log_every == 0:
            logger.log({f"dpo/{k}": v for k, v in m.items()}, run.step)
            bar.set_postfix(loss=f"{m['loss']:.4f}", acc=f"{m['implicit_accuracy']:.2f}",
                            rdiff=f"{m['reward_diff_mean']:.2f}")
    return {k: v / max(n, 1) for k, v in totals.items()}


def _anchor_loss(run: _Run, gen: torch.Generator, metrics: dict[str, float]) -> torch.Tensor:
    """CFM loss on one batch of real sketches (dpo/anchor.py); recorded as ``loss_anchor``."""
    x1, y = run.anchor.draw(gen)
    loss = cfm_loss(run.policy, x1.to(run.cfg.device), y.to(run.cfg.device), run.cfg.class_dropout, gen)
    metrics["loss_anchor"] = loss.item()
    return loss


def _epoch_row(epoch: int, train_m: dict, held_m: dict) -> dict:
    row = {"epoch": epoch}
    row.update({f"train/{k}": v for k, v in train_m.items()})
    row.update({f"heldout/{k}": v for k, v in held_m.items()})
    if train_m:
        row["dpo/implicit_accuracy"] = train_m["implicit_accuracy"]
        row["dpo/reward_diff_mean"] = train_m["reward_diff_mean"]
        row["train/mse_gap_w"] = train_m["model_mse_w"] - train_m["ref_mse_w"]
    return row


def _epoch_line(row: dict) -> str:
    g = lambda k: row.get(k, float("nan"))  # noqa: E731
    anchor = f", anchor {row['train/loss_anchor']:.4f}" if "train/loss_anchor" in row else ""
    return (f"epoch {row['epoch']}: loss {g('train/loss'):.4f} (dpo {g('train/loss_dpo'):.4f}, sft "
            f"{g('train/loss_sft'):.4f}{anchor}) acc {g('train/implicit_accuracy'):.3f} reward_diff "
            f"{g('train/reward_diff_mean'):+.3f} mse_w-ref {g('train/mse_gap_w'):+.2e} | held-out acc "
            f"{g('heldout/implicit_accuracy'):.3f} loss {g('heldout/loss_dpo'):.4f}")


def _finish(run: _Run, out: Path, ds_id: str, summary: dict, records: list[PreferenceRecord],
            stopped: bool) -> DPOResult:
    if run.best["state"] is not None:
        run.policy.load_state_dict(run.best["state"])
    meta = {"config": to_dict(run.cfg), "best_epoch": run.best["epoch"], "history": run.history,
            "data_summary": summary, "num_records": len(records),
            "machine": numerics_fingerprint(run.cfg.device)}  # the same seeds give other digits elsewhere
    path = out / "model.pt"
    ckpt_id = save_checkpoint(path, run.policy, run.policy.class_names, step=run.step, parent=run.base["id"],
                              dataset_id=ds_id, extra={"dpo": meta})
    tqdm.write(f"flow-dpo: wrote {path} (id {ckpt_id}, parent {run.base['id']}, best epoch {run.best['epoch']})")
    return DPOResult(path, ckpt_id, run.base["id"], run.history, run.best["epoch"], stopped, summary,
                     sorted(r.id for r in records))
