"""Text layer: normalization with an offset map back to the original, and jieba tokenization."""

from kesheng.nlp.normalize import NormalizedText, normalize
from kesheng.nlp.tokenize import Token, WordTokenizer

__all__ = ["NormalizedText", "Token", "WordTokenizer", "normalize"]
