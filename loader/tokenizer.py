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
import base64
import hashlib
from functools import lru_cache
from pathlib import Path

__all__ = ["SPECIAL_TOKENS", "TextTokenizer", "default_tokenizer", "load_tokenizer"]

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|media_start|>", "<|media_pad|>", "<|media_end|>",
                  "<|pad|>")


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


#: GPT-2's byte-level BPE ranks (tiktoken's ``r50k_base``, as the ``openai-whisper`` package
#: ships them in ``whisper/assets/gpt2.tiktoken``) and the sha256 tiktoken publishes for them
R50K_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
DEFAULT_FILE = Path(__file__).with_name("data") / "r50k-mmlake.tokenizer.json.gz"
#: sha256 of the committed tokenizer.json (decompressed): the default is the same on every machine
DEFAULT_SHA256 = "f8eb003ce33654c054c25143eb0b928e5beb891389eec0a8c9f9d88268676054"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map of bytes to printable characters (what byte-level BPE vocabularies use)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def build_from_tiktoken(ranks_file: bytes) -> str:
    """A ``tokenizers`` JSON from tiktoken BPE ranks (``base64 rank`` lines), with our special
    tokens after the ranks: the merges are recovered by replaying BPE on each token with the
    ranks below its own (what tiktoken's ``educational`` module and HF's converter do)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    if hashlib.sha256(ranks_file).hexdigest() != R50K_SHA256:
        raise ValueError("the BPE ranks file is not tiktoken's published r50k_base (sha256 differs)")
    ranks = {base64.b64decode(tok): int(r) for tok, r in (line.split() for line in ranks_file.decode().splitlines()
                                                         if line)}
    enc = _bytes_to_unicode()

    def split(token: bytes, max_rank: int) -> list[bytes]:
        parts = [bytes([b]) for b in token]
        while True:
            best = None
            for i in range(len(parts) - 1):
                r = ranks.get(parts[i] + parts[i + 1])
                if r is not None and r < max_rank and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                return parts
            i = best[1]
            parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]

    def show(b: bytes) -> str:
        return "".join(enc[x] for x in b)

    vocab = {show(t): r for t, r in ranks.items()}
    merges = []
    for t, r in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(t) > 1:
            a, b = split(t, r)
            merges.append((show(a), show(b)))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return tok.to_str()


@lru_cache(maxsize=1)
def default_tokenizer() -> TextTokenizer:
    """GPT-2's pretrained byte-level BPE (50,257 tokens) + the loader's special tokens, from the
    file committed with the package (sha256-checked: identical on every machine)."""
    import gzip

    js = gzip.decompress(DEFAULT_FILE.read_bytes()).decode("utf-8")
    digest = hashlib.sha256(js.encode()).hexdigest()
    if digest != DEFAULT_SHA256:
        raise ValueError(f"{DEFAULT_FILE} has sha256 {digest}, expected {DEFAULT_SHA256}: the packaged default "
                         f"tokenizer was changed; reinstall mmlake")
    return TextTokenizer(js, "gpt2-r50k+mmlake")


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
                                 description="Save the default tokenizer as tokenizer.json, or rebuild it from "
                                             "tiktoken's r50k_base ranks (openai-whisper's gpt2.tiktoken)")
    sub = ap.add_subparsers(dest="command", required=True)
    sv = sub.add_parser("save", help="write the default tokenizer.json")
    sv.add_argument("path")
    bd = sub.add_parser("build", help="rebuild the packaged default from the r50k_base ranks file")
    bd.add_argument("ranks", help="gpt2.tiktoken / r50k_base.tiktoken (sha256 checked)")
    bd.add_argument("--out", default=str(DEFAULT_FILE))
    args = ap.parse_args(argv)
    if args.command == "save":
        tok = default_tokenizer()
        Path(args.path).write_text(tok.json, encoding="utf-8")
        print(f"wrote {args.path}: vocab {tok.vocab_size}, sha256 {tok.digest[:12]}")
    else:
        import gzip

        js = build_from_tiktoken(Path(args.ranks).read_bytes())
        Path(args.out).write_bytes(gzip.compress(js.encode("utf-8"), mtime=0))
        print(f"wrote {args.out}: sha256 of the json {hashlib.sha256(js.encode()).hexdigest()}")


if __name__ == "__main__":
    main()
