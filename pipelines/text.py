"""Words and shingles for every script.

Latin, Cyrillic, Greek, Arabic ... are split on non-word characters. Chinese and Japanese are
written without spaces, so each Han, Hiragana or Katakana character is a word of its own (a
35-character Chinese caption is 35 words, not one; a 3-character edit changes 3 of them, so
word n-gram shingles become character n-grams there). Hangul is written with spaces between
words and is split like Latin.
"""

from __future__ import annotations

import re

__all__ = ["words", "CJK_CHARS"]

CJK_CHARS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_TOKEN = re.compile(f"[{CJK_CHARS}]|[^\\W{CJK_CHARS}]+", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased words: runs of word characters, and single CJK characters."""
    return _TOKEN.findall(text.lower())
