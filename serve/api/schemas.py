"""Request and response bodies of the API; the limits come from the settings, so OpenAPI shows them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from kesheng.models.schema import sentiment_name
from kesheng.serve.api.settings import Settings

__all__ = [
    "Comment",
    "EscalateInfo",
    "EvidenceOut",
    "FeedbackAccepted",
    "ModelInfo",
    "RequestModels",
    "TagResponse",
    "TagResult",
    "build_request_models",
]



def _id_type(value):
    # One clear message instead of one error per member of the union.
    if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
        raise ValueError(f"id must be a string, an integer or null, not {type(value).__name__}")
    return value


CommentId = Annotated[str | int | None, BeforeValidator(_id_type)]
Sentiment = Literal["negative", "neutral", "positive"]

TAG_EXAMPLE = {
    "comments": [
        {"id": "T-1", "text": "等了半小时都没人接电话，问题到现在还没解决"},
        {"id": "T-2", "text": "客服小姐姐很耐心，一次就帮我处理好了，谢谢！"},
        {"id": "T-3", "text": "第三次打电话了还是没人管，再不解决我就投诉到工信部！！！"},
    ]
}
ESCALATED_RESULT_EXAMPLE = {
    "id": "T-3",
    "tags": ["slow_response", "unresolved"],
    "scores": {"slow_response": 0.81, "unresolved": 0.93, "attitude": 0.22, "opacity": 0.08},
    "sentiment": "negative",
    "sentiment_scores": {"negative": 0.97, "neutral": 0.02, "positive": 0.01},
    "evidence": [
        {"tag": "unresolved", "start": 7, "end": 12, "text": "还是没人管", "weight": 0.61, "start_utf16": 7, "end_utf16": 12},
        {"tag": "escalate", "start": 19, "end": 25, "text": "投诉到工信部", "weight": 0.74, "start_utf16": 19, "end_utf16": 25},
    ],
    "notes": [],
    "escalate": True,
    "escalate_score": 0.96,
}
FEEDBACK_EXAMPLE = {
    "id": "T-1",
    "text": "等了半小时都没人接电话，问题到现在还没解决",
    "tags": ["slow_response", "unresolved"],
    "sentiment": "negative",
    "annotator": "agent-017",
    "model_version": "tfidf-linear-20261121-1a2b3c4d",
}


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _sentiment_by_any_name(value):
    # Agents may pick the Chinese name, as in Label Studio; anything else is left to fail validation.
    return sentiment_name(value) or value


def _no_lone_surrogates(value: str | None) -> str | None:
    # JSON allows "\ud800"; such a string can never be encoded back to UTF-8 in the response.
    if value is not None and (found := _LONE_SURROGATE.search(value)):
        raise ValueError(f"unpaired UTF-16 surrogate {found.group()!r} at character {found.start()}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Comment(_Strict):
    """Base class; `build_request_models` sets the length limit from the settings."""

    id: CommentId = Field(None, description="Your id for the comment (ticket id); echoed in the result.")
    text: str = Field(description="The comment as written, any length up to the limit.")

    _check_text = field_validator("text")(_no_lone_surrogates)

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: CommentId) -> CommentId:
        return _no_lone_surrogates(value) if isinstance(value, str) else value


class EvidenceOut(BaseModel):
    tag: str
    start: int = Field(description="Offset into the comment as sent, in Unicode code points (Python string indices).")
    end: int = Field(description="End offset (exclusive), code points: text[start:end] is the span.")
    text: str = Field(description="text[start:end]")
    weight: float
    start_utf16: int = Field(description="The same start in UTF-16 code units (JavaScript's String indices; an emoji counts 2).")
    end_utf16: int = Field(description="The same end in UTF-16 code units: comment.slice(start_utf16, end_utf16) in JavaScript.")


class TagResult(BaseModel):
    id: CommentId
    tags: list[str] = Field(description="Tags at or above their threshold; empty means 其他 (other).")
    scores: dict[str, float] = Field(description="Probability per tag of the model's taxonomy.")
    sentiment: Sentiment | None = Field(description="null for an empty or missing text: nothing was said, so no sentiment.")
    sentiment_scores: dict[str, float] | None = Field(description="Probability per sentiment; null when sentiment is null.")
    evidence: list[EvidenceOut] = Field(description="Spans of the comment behind each tag, and behind the escalation (tag \"escalate\").")
    notes: list[str] = Field(description="What the model could not do as usual (empty text, truncation).")
    escalate: bool | None = Field(
        description="需升级处理: the message needs a person now (threat to go to a regulator or the media, insult, "
        "safety or money harm, angry cancellation). Route true to a senior queue. null: empty text, or a model "
        "trained before the escalate head (unknown, not \"no\").",
        examples=[True],
    )
    escalate_score: float | None = Field(
        description="Probability behind `escalate`; escalate is true at or above the deployment's threshold (GET /v1/model).",
        examples=[0.96],
    )

    model_config = ConfigDict(json_schema_extra={"examples": [ESCALATED_RESULT_EXAMPLE]})


class TagResponse(BaseModel):
    model_version: str
    results: list[TagResult] = Field(description="One result per comment, in request order.")


class LabelInfo(BaseModel):
    name: str
    zh: str
    description: str
    threshold: float


class EscalateInfo(BaseModel):
    threshold: float = Field(description="The threshold in use: this deployment's KESHENG_ESCALATE_THRESHOLD, else the model's.")
    model_threshold: float = Field(description="The threshold tuned on dev when the model was trained (for high recall).")
    overridden: bool


class ModelInfo(BaseModel):
    model_version: str
    model_type: str
    format_version: int
    labels: list[LabelInfo]
    sentiments: list[str]
    escalate: EscalateInfo | None = Field(description="null: the model has no escalate head (its results say escalate=null).")
    metrics: dict = Field(description="The model's metrics.json: evaluation on data it was not trained on.")
    loaded_at: str


class FeedbackAccepted(BaseModel):
    feedback_id: int = Field(description="Sequence number in the label store.")
    received_at: str
    judged_tags: list[str] = Field(description="The taxonomy the labels were judged against.")


class ErrorItem(BaseModel):
    loc: str = Field(description="Where in the request, e.g. comments[3].text")
    msg: str
    type: str


class ErrorResponse(BaseModel):
    detail: str
    errors: list[ErrorItem] = []


@dataclass(frozen=True)
class RequestModels:
    tag_request: type[BaseModel]
    feedback_request: type[BaseModel]


def build_request_models(settings: Settings) -> RequestModels:
    class TagComment(Comment):
        # null (or a missing text) is answered like files and Python answer it: no tags, no
        # sentiment and the note "missing text", not a 422 for the whole batch.
        text: str | None = Field(None, max_length=settings.max_text_chars, description="The comment as written; null: the result says \"missing text\".")

    class TagRequest(_Strict):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [TAG_EXAMPLE]})

        comments: list[TagComment] = Field(
            min_length=1, max_length=settings.max_comments, description="Comments to tag, in order."
        )

    class FeedbackRequest(Comment):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [FEEDBACK_EXAMPLE]})

        text: str = Field(min_length=1, max_length=settings.max_text_chars, description="The comment as written.")
        tags: list[str] = Field(max_length=64, description="Every tag that applies (machine names); [] means 其他.")
        sentiment: Annotated[Sentiment | None, BeforeValidator(_sentiment_by_any_name)] = Field(
            None, description="Corrected sentiment (negative/neutral/positive, or 负面/中性/正面); omit if not judged."
        )
        escalate: bool | None = Field(None, description="Corrected escalate flag (needs a person now); omit if not judged.")
        annotator: str | None = Field(None, max_length=200, description="Who corrected it.")
        model_version: str | None = Field(None, max_length=200, description="The model whose output was corrected.")
        note: str | None = Field(None, max_length=2000)

        _check_strings = field_validator("annotator", "model_version", "note")(_no_lone_surrogates)

        @field_validator("tags")
        @classmethod
        def _distinct(cls, value: list[str]) -> list[str]:
            for tag in value:
                _no_lone_surrogates(tag)
            repeated = sorted({t for t in value if value.count(t) > 1})
            if repeated:
                raise ValueError(f"tags repeated: {repeated}")
            return value

    return RequestModels(tag_request=TagRequest, feedback_request=FeedbackRequest)
