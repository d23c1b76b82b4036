"""Text layer: normalization with an offset map back to the original, and jieba tokenization."""

from nlp.normalize import NormalizedText, normalize
from nlp.tokenize import Token, WordTokenizer

__all__ = ["NormalizedText", "Token", "WordTokenizer", "normalize"]
