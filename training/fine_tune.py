"""Fine-tuning the transformer: the training arguments, and the trainer that runs them.

The model (`kesheng.models.transformer`) knows its architecture, how a batch is padded and what
its loss is; this module decides how it is optimised: AdamW with a learning rate for the
pretrained encoder and one for the fresh heads, linear warm-up and decay, class weights, batch
order, seed, device and threads. The epoch loop itself (`training.loop`) knows nothing of
the task. The arguments are a record of how a model was trained (saved in its
`training_config`), not part of the model: loading a model never reads them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from kesheng.models.transformer import TrainingData

if TYPE_CHECKING:  # torch is imported only when a fine-tuning runs
    from kesheng.training.loop import LoopResult

__all__ = ["FineTuneArgs", "FineTuner"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FineTuneArgs:
    epochs: int = 5  # upper bound (early stopping may stop before); the learning rate decays to 0 over these
    patience: int = 2  # epochs without a better dev score before stopping
    batch_size: int = 16  # training texts per step; small batches suit 2k examples and a CPU
    train_max_length: int = 128  # longer training texts keep head + tail (13% of real comments); shorter sequences make steps cheaper
    learning_rate: float = 1e-4  # encoder learning rate (AdamW); a small encoder tolerates more than BERT-base's 2e-5, and at 1e-4 the dev score still rose at epoch 5
    head_learning_rate: float = 2e-3  # fresh heads learn faster than the pretrained encoder
    weight_decay: float = 0.01  # AdamW decay on weights (not biases or LayerNorm)
    warmup_ratio: float = 0.06  # share of steps with a rising learning rate; avoids wrecking pretrained weights early
    freeze_embeddings: bool = True  # word embeddings stay as pretrained: 2k examples cannot retrain 16M parameters, and steps are faster
    pos_weight_power: float = 0.5  # tag positives weigh (negatives/positives)**power in the loss: rare tags still get recall; thresholds do the rest
    sentiment_weight_power: float = 0.5  # sentiment classes weigh (n/(k*count))**power: neutral is the rare, weak class
    sentiment_loss_weight: float = 1.0  # sentiment loss relative to the tag loss in the joint objective
    max_grad_norm: float = 1.0  # gradient clipping; fine-tuning with fresh heads has spiky early gradients
    seed: int = 13  # head initialization, dropout and batch order (the training pipeline sets it to TrainConfig.seed)
    device: str = "auto"  # "auto" = cuda when available, else cpu; or "cpu" / "cuda"
    num_threads: int | None = None  # torch CPU threads while training; None = all cores
    checkpoint_dir: str | None = None  # save training state after every epoch here and resume from it

    def __post_init__(self):
        if self.train_max_length < 8:
            raise ValueError("train_max_length must be at least 8 tokens")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")


class FineTuner:
    """Runs a fine-tuning with `args`; what `TransformerClassifier(..., trainer=...)` calls in `fit`."""

    def __init__(self, args: FineTuneArgs = FineTuneArgs()):
        self.args = args

    @property
    def max_length(self) -> int:
        return self.args.train_max_length

    @property
    def seed(self) -> int:
        return self.args.seed

    @property
    def freeze_embeddings(self) -> bool:
        return self.args.freeze_embeddings

    def device_name(self) -> str:
        import torch

        if self.args.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.args.device

    def fine_tune(self, module, data: TrainingData, eval_fn: Callable[[], float] | None, fingerprint: str) -> "LoopResult":
        """Optimise `module` on `data`; `eval_fn` scores an epoch (higher is better) for early stopping."""
        import torch
        from transformers import get_linear_schedule_with_warmup

        from kesheng.training.loop import train_loop

        args = self.args
        if args.num_threads:
            torch.set_num_threads(args.num_threads)
        device = torch.device(self.device_name())
        module.to(device)
        torch.manual_seed(args.seed)
        pos_weight, class_weight = (torch.tensor(w, dtype=torch.float32, device=device) for w in self._class_weights(data))
        log.info("fine-tuning on %d texts, device %s, tag pos_weight %s, sentiment class weights %s",
                 len(data.ids), device, np.round(pos_weight.cpu().numpy(), 2).tolist(), np.round(class_weight.cpu().numpy(), 2).tolist())

        def epoch_batches(epoch: int) -> list:
            # Shuffle, then sort by length inside chunks of 50 batches: little padding, still random.
            rng = random.Random(args.seed * 1000 + epoch)
            order = list(range(len(data.ids)))
            rng.shuffle(order)
            chunk = args.batch_size * 50
            batches = []
            for c in range(0, len(order), chunk):
                part = sorted(order[c : c + chunk], key=lambda i: len(data.ids[i]))
                batches += [part[b : b + args.batch_size] for b in range(0, len(part), args.batch_size)]
            rng.shuffle(batches)
            return [data.collate(b) for b in batches]

        def loss_fn(model, batch) -> "torch.Tensor":
            return model.loss([t.to(device) for t in batch], pos_weight, class_weight, args.sentiment_loss_weight)

        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "LayerNorm.bias")
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        head = [p for n, p in named if not n.startswith("encoder.")]
        encoder_decay = [p for n, p in named if n.startswith("encoder.") and not n.endswith(no_decay)]
        encoder_plain = [p for n, p in named if n.startswith("encoder.") and n.endswith(no_decay)]
        optimizer = torch.optim.AdamW(
            [
                {"params": encoder_decay, "lr": args.learning_rate, "weight_decay": args.weight_decay},
                {"params": encoder_plain, "lr": args.learning_rate, "weight_decay": 0.0},
                {"params": head, "lr": args.head_learning_rate, "weight_decay": args.weight_decay},
            ]
        )
        steps = args.epochs * ((len(data.ids) + args.batch_size - 1) // args.batch_size)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(steps * args.warmup_ratio), steps)
        # The checkpoint belongs to one run: the model's data and architecture, and these arguments.
        run = hashlib.sha256(json.dumps([fingerprint, asdict(args) | {"checkpoint_dir": None}]).encode()).hexdigest()
        return train_loop(
            module,
            optimizer,
            scheduler,
            epoch_batches,
            loss_fn,
            epochs=args.epochs,
            eval_fn=eval_fn,
            patience=args.patience,
            max_grad_norm=args.max_grad_norm,
            checkpoint_dir=args.checkpoint_dir,
            fingerprint=run,
        )

    def _class_weights(self, data: TrainingData) -> tuple[np.ndarray, np.ndarray]:
        tags, sentiments = data.tags, data.sentiments
        positives = (tags == 1).sum(axis=0).astype(np.float64)
        negatives = (tags == 0).sum(axis=0).astype(np.float64)
        pos_weight = np.where(positives > 0, (negatives / np.maximum(positives, 1)) ** self.args.pos_weight_power, 1.0)
        labeled = sentiments[sentiments >= 0]
        counts = np.bincount(labeled, minlength=3).astype(np.float64)
        class_weight = np.where(counts > 0, (len(labeled) / (len(counts) * np.maximum(counts, 1))) ** self.args.sentiment_weight_power, 0.0)
        return pos_weight, class_weight
