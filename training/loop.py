"""A thin, task-agnostic torch training loop: epochs, early stopping, checkpoints, progress.

It knows a module, a batch source, a loss callable and an evaluation callback that returns a
score (higher is better); nothing about tags or sentiment. Checkpoints are training state, not
model directories: weights go to safetensors, optimizer/scheduler state to `torch.save` files
read back with `weights_only=True` (tensors and numbers only, nothing executable).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors.torch import load_file, save_file

from kesheng.files.atomic import replace_directory, staging_directory

__all__ = ["LoopResult", "train_loop"]

log = logging.getLogger(__name__)

STATE_FILE = "loop_state.json"
MODULE_FILE = "module.safetensors"
BEST_FILE = "best.safetensors"
OPTIMIZER_FILE = "optimizer.pt"


@dataclass
class LoopResult:
    best_score: float | None  # None when no eval callback was given
    best_epoch: int  # 1-based epoch whose weights the module holds at the end
    epochs_run: int
    history: list[dict] = field(default_factory=list)  # per epoch: loss, score, seconds
    resumed_from_epoch: int = 0


def _state_dict_cpu(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in module.state_dict().items()}


def train_loop(
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    epoch_batches: Callable[[int], Sequence],
    loss_fn: Callable[[torch.nn.Module, object], torch.Tensor],
    epochs: int,
    eval_fn: Callable[[], float] | None = None,
    patience: int = 2,
    max_grad_norm: float | None = 1.0,
    checkpoint_dir: str | Path | None = None,
    fingerprint: str = "",
    progress: bool = True,
) -> LoopResult:
    """Train for up to `epochs`, keep the weights of the best-scoring epoch.

    `epoch_batches(epoch)` returns that epoch's batches; it must be deterministic in `epoch`
    so that a resumed run sees the same order as an uninterrupted one. With `checkpoint_dir`,
    the state after every epoch is saved there and a later call with the same `fingerprint`
    (a digest of data and settings) resumes after the last finished epoch; a checkpoint with
    another fingerprint is an error rather than a silent mix of two runs.
    """
    checkpoint = Path(checkpoint_dir) if checkpoint_dir else None
    history: list[dict] = []
    best_score: float | None = None
    best_epoch = 0
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs = 0
    start_epoch = 0
    if checkpoint is not None and (checkpoint / STATE_FILE).is_file():
        state = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
        if state.get("fingerprint") != fingerprint:
            raise ValueError(
                f"{checkpoint} holds a checkpoint of another run (different data or settings); "
                "remove it or choose another checkpoint directory"
            )
        device = next(module.parameters()).device
        module.load_state_dict(load_file(str(checkpoint / MODULE_FILE), device=str(device)))
        saved = torch.load(checkpoint / OPTIMIZER_FILE, map_location=device, weights_only=True)
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved.get("scheduler") is not None:
            scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        start_epoch = state["epoch"]
        best_score, best_epoch, bad_epochs, history = state["best_score"], state["best_epoch"], state["bad_epochs"], state["history"]
        if (checkpoint / BEST_FILE).is_file():
            best_state = load_file(str(checkpoint / BEST_FILE))
        log.info("resuming from %s after epoch %d (best score %s at epoch %d)", checkpoint, start_epoch, best_score, best_epoch)
    resumed_from = start_epoch

    for epoch in range(start_epoch, epochs):
        if eval_fn is not None and bad_epochs >= patience:
            break
        started = time.perf_counter()
        module.train()
        batches = epoch_batches(epoch)
        total = 0.0
        show = progress and sys.stderr.isatty()
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(batches), desc=f"epoch {epoch + 1}/{epochs}", leave=False)
        log_every = max(1, len(batches) // 10)
        for step, batch in enumerate(batches, start=1):
            loss = loss_fn(module, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch + 1} step {step}; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(module.parameters(), max_grad_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total += loss.item()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{total / step:.4f}")
            elif progress and (step % log_every == 0 or step == len(batches)):
                elapsed = time.perf_counter() - started
                eta = elapsed / step * (len(batches) - step)
                log.info("epoch %d/%d step %d/%d loss %.4f (%.0fs, about %.0fs left in epoch)", epoch + 1, epochs, step, len(batches), total / step, elapsed, eta)
        if bar is not None:
            bar.close()
        record = {"epoch": epoch + 1, "loss": total / max(len(batches), 1), "train_seconds": round(time.perf_counter() - started, 1)}
        if eval_fn is not None:
            module.eval()
            score = float(eval_fn())
            record["score"] = score
            if best_score is None or score > best_score + 1e-6 or math.isnan(best_score):
                best_score, best_epoch, bad_epochs = score, epoch + 1, 0
                best_state = _state_dict_cpu(module)
            else:
                bad_epochs += 1
        else:
            best_epoch = epoch + 1
        record["seconds"] = round(time.perf_counter() - started, 1)
        history.append(record)
        log.info("epoch %d/%d: %s", epoch + 1, epochs, ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items() if k != "epoch"))
        if checkpoint is not None:
            _save_checkpoint(checkpoint, module, optimizer, scheduler, best_state, {
                "fingerprint": fingerprint, "epoch": epoch + 1, "best_score": best_score,
                "best_epoch": best_epoch, "bad_epochs": bad_epochs, "history": history,
            })
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return LoopResult(best_score, best_epoch, len(history), history, resumed_from)


def _save_checkpoint(directory: Path, module, optimizer, scheduler, best_state, state: dict) -> None:
    """Write the whole checkpoint beside the old one, then swap, so a crash leaves one intact."""
    staging = staging_directory(directory)
    save_file(_state_dict_cpu(module), str(staging / MODULE_FILE))
    if best_state is not None:
        save_file(best_state, str(staging / BEST_FILE))
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler is not None else None, "torch_rng": torch.get_rng_state()},
        staging / OPTIMIZER_FILE,
    )
    (staging / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
    replace_directory(staging, directory)
