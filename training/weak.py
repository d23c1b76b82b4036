"""Weak supervision over the unlabeled pool: labeling functions -> probabilistic labels.

Each labeling function (LF) votes for one field (a tag or the sentiment) on one clause of the
normalized text, or abstains. Tag LFs handle negation ("不慢", "没有乱扣费": a negator just
before the match vetoes it) and scope (product slowness such as 网速慢 is not slow service).
Votes are combined per field with each LF's precision measured on the hand labels:
P(tag) = 1 - prod(1 - precision) over the positive LFs that fire, damped by negative LFs,
and the tag's base rate among comments where no LF fires.

    python -m training.weak --corpus-dir ../shared/data/pool          # LF precision report
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

import numpy as np

from kesheng.models.schema import DEFAULT_TAXONOMY, SENTIMENTS
from kesheng.nlp import normalize
from kesheng.training.corpus import SOURCES, resolve_corpus_dir
from kesheng.training.data import LabeledSet

__all__ = ["LABELING_FUNCTIONS", "LabelingFunction", "WeakLabeler", "polarity_votes"]

_CLAUSE = re.compile(r"[^,.!?;。，！？；~\n]+")
_NEGATOR_BEFORE = re.compile(r"(不|没|没有|无|未|别|并不|从不|一点也不|一点都不|不算|不太)\s*$")


@dataclass(frozen=True)
class LabelingFunction:
    name: str
    field: str  # a tag name or "sentiment"
    vote: int | str  # 1/0 for tags, a sentiment name for sentiment
    pattern: re.Pattern[str]
    veto: re.Pattern[str] | None = None  # the clause matching this is out of scope
    negatable: bool = True  # a negator right before the match cancels the vote

    def fires(self, clauses: list[str]) -> bool:
        for clause in clauses:
            if self.veto is not None and self.veto.search(clause):
                continue
            for match in self.pattern.finditer(clause):
                if self.negatable and _NEGATOR_BEFORE.search(clause[: match.start()][-4:]):
                    continue
                return True
        return False


def _lf(name, field, vote, pattern, veto=None, negatable=True) -> LabelingFunction:
    return LabelingFunction(name, field, vote, re.compile(pattern), re.compile(veto) if veto else None, negatable)


_PRODUCT = r"网速|网络|信号|手机|电脑|系统|软件|app|开机|反应|电梯|充电|运行|加载|下载|上网|wifi"
LABELING_FUNCTIONS: tuple[LabelingFunction, ...] = (
    # slow_response
    _lf("slow_wait_duration", "slow_response", 1, r"等了.{0,6}(分钟|小时|天|周|个月|半天|好久|很久)|(一|两|三|四|五|几|半|\d+)个?多?(小时|钟头)(才|还没|都没)"),
    _lf("slow_word", "slow_response", 1, r"太慢|很慢|好慢|超慢|慢死|慢得|非常慢|特别慢|速度慢|有点慢|比较慢|慢了|迟迟|拖拖拉拉|磨磨蹭蹭|一拖再拖", veto=_PRODUCT),
    _lf("slow_delivery_late", "slow_response", 1, r"(送|到|发货|上菜|出餐|配送|物流|快递).{0,4}(慢|晚|迟|超时)|超时|延误|还没(送到|到|发货|收到)"),
    _lf("slow_no_reply", "slow_response", 1, r"没人(回复|回应|理|接|管)|不回复|不回消息|无人接听|打不通|联系不上|石沉大海|杳无音信"),
    _lf("slow_chasing", "slow_response", 1, r"催了|催单|一直催|多次催|再三催"),
    _lf("slow_fast_praise", "slow_response", 0, r"很快|挺快|非常快|超快|神速|及时|准时|提前(送达|到)|速度(快|不错|很快)|不慢", negatable=False),
    # unresolved
    _lf("unres_still", "unresolved", 1, r"(还是|仍然|依然|依旧|至今|到现在|一直)(没|未|不)(有)?(解决|处理|修好|好|回复|退|到账|弄好)|问题依旧|没有任何(结果|进展)"),
    _lf("unres_repeat", "unresolved", 1, r"(多次|几次|反复|三番五次|无数次|好几次|第[二三四五六]次)(投诉|反映|联系|打电话|致电|报修|找|沟通)|(打|投诉|反映)了(好|很)?(多|几)次"),
    _lf("unres_runaround", "unresolved", 1, r"踢皮球|转来转去|推来推去|互相推|扯皮|投诉无门|没人管|不了了之|没有下文|没下文", negatable=False),
    _lf("unres_broken_promise", "unresolved", 1, r"(说好|答应|承诺|说)(的)?.{0,10}(结果|却|但|也没|还没|都没)|(回电|回复|处理|联系)(呢|吗)?\?"),
    # attitude
    _lf("att_bad", "attitude", 1, r"态度(差|恶劣|极差|很差|太差|不好|非常差|真差|冷淡|蛮横|嚣张)|服务态度.{0,3}(差|不好)"),
    _lf("att_behaviour", "attitude", 1, r"不耐烦|爱理不理|爱答不理|挂(了|断)?(我)?(的)?电话|骂人|骂我|吼|凶|甩脸|白眼|冷冰冰|嘲笑|威胁"),
    _lf("att_perfunctory", "attitude", 1, r"敷衍|打官腔|推诿|推卸|踢皮球|只会说(抱歉|对不起)|机器人一样|模板|套话|不负责任", veto=r"不敷衍"),
    _lf("att_good", "attitude", 0, r"态度(很|非常|挺|特别|超|还|真)?(好|不错|热情|耐心|和蔼|友好)|热情|耐心|周到|贴心|有礼貌|客气", negatable=False),
    # opacity
    _lf("opa_charge", "opacity", 1, r"莫名(其妙)?.{0,4}(扣|收|多)|乱(扣|收)费|多(扣|收)了?|扣费|扣了.{0,4}(钱|元|块)|无缘无故|偷偷(扣|开通|订)|乱收|隐形消费|霸王条款"),
    _lf("opa_no_notice", "opacity", 1, r"(没|不|未)(有)?(提前)?(通知|告知|说明|告诉|提醒|解释)|也不说(为什么|原因|明)|不知情|不透明"),
    _lf("opa_explain", "opacity", 1, r"给(个|一个|我个)?(说法|解释|交代)|讨(个)?说法|求(个)?说法|怎么回事|为什么(扣|收|多|取消|停|关)"),
    _lf("opa_misleading", "opacity", 1, r"虚假宣传|与(描述|宣传|介绍)不符|货不对板|欺骗|忽悠|误导|套路|文字游戏"),
    # sentiment
    _lf("sent_thanks", "sentiment", "positive", r"谢谢|感谢|满意|好评|推荐|点赞|五星|赞|不错|很好|好吃|喜欢", negatable=True),
    _lf("sent_complaint", "sentiment", "negative", r"差评|垃圾|投诉|坑|骗|失望|恶心|无语|后悔|再也不|太差|气死|愤怒|黑心", negatable=True),
    _lf("sent_question", "sentiment", "neutral", r"(请问|怎么|如何|能不能|可以吗|吗)\??$", negatable=False),
)


def _clauses(text: str) -> list[str]:
    return _CLAUSE.findall(normalize(text).text)


def polarity_votes(corpus_dir: str | None) -> dict[str, str]:
    """The public corpora's own sentiment signal: review polarity; STC-3 customer satisfaction.

    Reviews carry label 1 (positive) / 0 (negative). STC-3 dialogues carry 19 annotators'
    customer-satisfaction scores S in -2..2: mean <= -0.5 counts as negative, >= 0.5 as positive.
    """
    directory = resolve_corpus_dir(corpus_dir)
    votes: dict[str, str] = {}
    for source in ("waimai", "hotel", "shopping"):
        with open(directory / SOURCES[source], encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("label") in ("0", "1"):
                    votes[row["id"]] = "positive" if row["label"] == "1" else "negative"
    for dialogue in json.loads((directory / SOURCES["stc3"]).read_text(encoding="utf-8")):
        scores = [a["quality"]["S"] for a in dialogue.get("annotations", []) if "quality" in a]
        if scores:
            s = mean(scores)
            if s <= -0.5:
                votes[f"stc3-{dialogue['id']}"] = "negative"
            elif s >= 0.5:
                votes[f"stc3-{dialogue['id']}"] = "positive"
    return votes


class WeakLabeler:
    """Probabilistic labels from LF votes, with LF precisions estimated on hand labels."""

    def __init__(self, functions: tuple[LabelingFunction, ...] = LABELING_FUNCTIONS):
        self.functions = functions

    def votes(self, texts: list[str]) -> np.ndarray:
        """(n_texts, n_functions) bool: which LF fires on which text."""
        out = np.zeros((len(texts), len(self.functions)), dtype=bool)
        for i, text in enumerate(texts):
            clauses = _clauses(text)
            for j, lf in enumerate(self.functions):
                out[i, j] = lf.fires(clauses)
        return out

    def fit(self, data: LabeledSet, polarity: dict[str, str] | None = None) -> "WeakLabeler":
        """Precision and coverage of every LF, and tag base rates where no LF fires."""
        fired = self.votes(data.texts)
        names = data.taxonomy.names
        self.report_ = []
        self.precision_ = np.zeros(len(self.functions))
        for j, lf in enumerate(self.functions):
            hits = fired[:, j]
            if lf.field == "sentiment":
                truth = np.array([s == lf.vote for s in data.sentiments])
            else:
                truth = data.tags[:, names.index(lf.field)] == lf.vote
            precision = float(truth[hits].mean()) if hits.any() else 0.0
            self.precision_[j] = precision
            self.report_.append({"lf": lf.name, "field": lf.field, "vote": lf.vote, "coverage": float(hits.mean()),
                                 "fires": int(hits.sum()), "precision": precision})
        self.base_rate_ = {}
        for k, name in enumerate(names):
            columns = [j for j, lf in enumerate(self.functions) if lf.field == name]
            silent = ~fired[:, columns].any(axis=1)
            self.base_rate_[name] = float(data.tags[silent, k].mean()) if silent.any() else 0.0
        if polarity:
            known = [(s, polarity[i]) for i, s in zip(data.ids, data.sentiments) if i in polarity]
            self.polarity_precision_ = float(np.mean([a == b for a, b in known])) if known else 0.0
            self.report_.append({"lf": "corpus_polarity", "field": "sentiment", "vote": "label/S",
                                 "coverage": len(known) / max(len(data), 1), "fires": len(known),
                                 "precision": self.polarity_precision_})
        return self

    def predict_proba(self, texts: list[str], ids: list[str] | None = None, polarity: dict[str, str] | None = None):
        """(tag probabilities (n, n_tags), sentiment probabilities (n, 3)) from LF votes."""
        fired = self.votes(texts)
        names = DEFAULT_TAXONOMY.names
        tags = np.zeros((len(texts), len(names)))
        for k, name in enumerate(names):
            positive = [j for j, lf in enumerate(self.functions) if lf.field == name and lf.vote == 1]
            negative = [j for j, lf in enumerate(self.functions) if lf.field == name and lf.vote == 0]
            for i in range(len(texts)):
                pos = [self.precision_[j] for j in positive if fired[i, j]]
                neg = [self.precision_[j] for j in negative if fired[i, j]]
                p = 1.0 - float(np.prod([1.0 - q for q in pos])) if pos else self.base_rate_[name]
                for q in neg:
                    p *= 1.0 - q
                tags[i, k] = p
        sentiment = np.full((len(texts), len(SENTIMENTS)), 1.0 / len(SENTIMENTS))
        for i in range(len(texts)):
            scores = np.ones(len(SENTIMENTS))
            for j, lf in enumerate(self.functions):
                if lf.field == "sentiment" and fired[i, j]:
                    scores[SENTIMENTS.index(lf.vote)] *= 1 + 4 * self.precision_[j]
            if polarity and ids is not None and ids[i] in polarity:
                scores[SENTIMENTS.index(polarity[ids[i]])] *= 1 + 8 * getattr(self, "polarity_precision_", 0.8)
            sentiment[i] = scores / scores.sum()
        return tags, sentiment


def main() -> None:
    from kesheng.training.corpus import load_corpus_labels

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-dir", default=None)
    parser.add_argument("--labels", default=str(Path(__file__).parent / "labels" / "real_labels.jsonl"))
    args = parser.parse_args()
    # Precision is measured on train + dev only; the test split stays unseen.
    data = LabeledSet.concat([load_corpus_labels(args.labels, args.corpus_dir, split=s) for s in ("train", "dev")])
    labeler = WeakLabeler().fit(data, polarity_votes(args.corpus_dir))
    print(f"labeling functions on {len(data)} hand-labeled comments (train + dev)")
    print(f"{'function':<22}{'field':<15}{'vote':<10}{'fires':>7}{'coverage':>10}{'precision':>11}")
    for row in labeler.report_:
        print(f"{row['lf']:<22}{row['field']:<15}{str(row['vote']):<10}{row['fires']:>7}{row['coverage']:>10.3f}{row['precision']:>11.3f}")
    print("tag base rate where no LF fires:", {k: round(v, 3) for k, v in labeler.base_rate_.items()})


if __name__ == "__main__":
    main()
