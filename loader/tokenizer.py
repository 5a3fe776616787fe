"""Tokenizers: the project's default byte-level BPE, built offline, or any ``tokenizer.json``.

The default tokenizer is trained in about 0.2 s from text that ships with every CPython
(``pydoc_data.topics``, the language reference) -- nothing is downloaded. BPE training is
deterministic, so every process builds the same vocabulary; its sha256 is part of the
loader's config fingerprint, so two machines with different Python builds cannot silently
disagree (save it once with ``python -m loader.tokenizer save PATH`` and pass ``PATH`` to
pin it). Special tokens: ``<|endoftext|>`` (end of a pre-training document), ``<|im_start|>``,
``<|im_end|>`` (ChatML), ``<|media_start|>``, ``<|media_pad|>``, ``<|media_end|>`` (an image:
start, one pad per merged patch, end), ``<|pad|>`` (row padding, its own id: padding with
``<|endoftext|>`` would teach the model document ends that are not there). Text never produces a special token id: a literal
``<|im_start|>`` inside user data is encoded as ordinary characters.
"""

from __future__ import annotations

import argparse
import hashlib
from functools import lru_cache
from pathlib import Path

__all__ = ["SPECIAL_TOKENS", "TextTokenizer", "default_tokenizer", "load_tokenizer"]

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|media_start|>", "<|media_pad|>", "<|media_end|>",
                  "<|pad|>")
DEFAULT_VOCAB = 8192


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` with the special ids the loader needs and a content digest."""

    def __init__(self, json_str: str, name: str) -> None:
        from tokenizers import Tokenizer

        self.json = json_str
        self.name = name
        self.digest = hashlib.sha256(json_str.encode()).hexdigest()
        self._tok = Tokenizer.from_str(json_str)
        self._tok.encode_special_tokens = True
        missing = [t for t in SPECIAL_TOKENS if self._tok.token_to_id(t) is None]
        if missing:
            raise ValueError(f"tokenizer {name} lacks the special tokens {missing}: add them "
                             f"(tokenizer.add_special_tokens) or use the default tokenizer (tokenizer=None)")
        ids = {t: self._tok.token_to_id(t) for t in SPECIAL_TOKENS}
        self.eot, self.im_start, self.im_end = ids["<|endoftext|>"], ids["<|im_start|>"], ids["<|im_end|>"]
        self.media_start, self.media_pad, self.media_end = (ids["<|media_start|>"], ids["<|media_pad|>"],
                                                            ids["<|media_end|>"])
        #: fills the rest of a packed row; never a document boundary (``eot`` is one)
        self.pad = ids["<|pad|>"]
        self.vocab_size = self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids if text else []

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def __getstate__(self) -> dict[str, str]:
        return {"json": self.json, "name": self.name}

    def __setstate__(self, state: dict[str, str]) -> None:
        self.__init__(state["json"], state["name"])  # type: ignore[misc]


def _corpus() -> list[str]:
    import pydoc_data.topics as topics

    text = "\n".join(topics.topics[k] for k in sorted(topics.topics))
    return [text[i: i + 10_000] for i in range(0, len(text), 10_000)]


@lru_cache(maxsize=4)
def default_tokenizer(vocab_size: int = DEFAULT_VOCAB) -> TextTokenizer:
    """The default byte-level BPE, trained offline (deterministic, ~0.2 s)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    return TextTokenizer(tok.to_str(), f"mmlake-default-bpe-{vocab_size}")


def load_tokenizer(spec: str | Path | None) -> TextTokenizer:
    """``None`` -> the default tokenizer; otherwise the path of a ``tokenizer.json``."""
    if spec is None:
        return default_tokenizer()
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer {spec!r}: no such file (give a tokenizer.json, or tokenizer=None "
                                f"for the default)")
    return TextTokenizer(path.read_text(encoding="utf-8"), str(path))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m loader.tokenizer",
                                 description="Build the default byte-level BPE offline and save it as tokenizer.json")
    ap.add_argument("command", choices=["save"])
    ap.add_argument("path", help="where to write tokenizer.json")
    ap.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB)
    args = ap.parse_args(argv)
    tok = default_tokenizer(args.vocab_size)
    Path(args.path).write_text(tok.json, encoding="utf-8")
    print(f"wrote {args.path}: vocab {tok.vocab_size}, sha256 {tok.digest[:12]}")


if __name__ == "__main__":
    main()
