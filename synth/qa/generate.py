"""Model QA with rejection sampling: k candidates per question from an OpenAI-compatible model,
verified in order, only verified ones kept.

Two modes:

* ``answer`` -- the sample already asks questions with reference answers (template QA, the
  knowledge generators, a curated set): the model answers each question k times (attempt
  0..k-1, with its reasoning); the **rule** verifier checks each answer against the reference
  (``synth.qa.verify.rule_check``); where a question has no reference, **self-consistency**
  keeps the candidates that give the majority answer (share >= ``min_agreement``). What is
  kept is the question with the model's reasoning and answer -- Kimi-VL's rejection-sampled
  chain-of-thought data.
* ``generate`` -- no ground truth (a document page, a photo): the model writes k candidate
  (question, answer) pairs; each is checked by **self-consistency**: the model answers its own
  question again, independently (attempt k+i), and the two answers must agree.

Then an optional **judge** (a second endpoint, a rubric) must pass the candidate. Each
candidate records its raw text, parsed fields, every verdict (verifier, ok, reason) and whether
it came from the cache; the sample records the chosen index and why.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from datalake.sample import PLACEHOLDER_RE, MediaPart, Message, Sample, TextPart
from synth.qa.client import ChatClient, ChatError, image_part
from synth.qa.verify import Verdict, answer_kind, majority, parse_candidate, rule_check

__all__ = ["QAConfig", "ModelQA", "NoAnswer", "questions"]

ANSWER_PROMPT = ("Answer the question about the content above. Think it through, then reply with only a JSON "
                 'object: {"reasoning": "<your steps>", "answer": "<the short final answer: a number with its unit '
                 'if it has one, a word, or an option letter>"}.')
GENERATE_PROMPT = ("Write one question that can be answered only from the content above, and its answer. The "
                   "answer must be short and checkable (a number, a name, a word). Reply with only a JSON object: "
                   '{"question": "...", "answer": "..."}.')
JUDGE_RUBRIC = ("Judge the question-answer pair against the content: PASS only if the question is answerable from "
                "the content alone and the answer is correct and complete.")


class NoAnswer(Exception):
    """Not one candidate of a sample could be obtained (every request failed)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class QAConfig:
    mode: str = "answer"
    k: int = 4
    temperature: float = 0.8
    max_tokens: int = 512
    max_questions: int = 1
    rel_tol: float = 0.001
    min_agreement: float = 0.5
    keep_reasoning: bool = True
    rubric: str = JUDGE_RUBRIC
    max_text_chars: int = 6000

    def __post_init__(self) -> None:
        if self.mode not in ("answer", "generate"):
            raise ValueError(f"mode must be answer or generate, got {self.mode!r}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if not 0 < self.min_agreement <= 1:
            raise ValueError(f"min_agreement must be in (0, 1], got {self.min_agreement}")


def _content(sample: Sample, upto: int | None = None) -> list[dict[str, Any]]:
    """The sample's media (as data URLs) and text, in order, as one user message's parts; for a
    conversation, the first user turn's media (the questions are asked one by one)."""
    parts: list[dict[str, Any]] = []
    msgs = sample.messages[:upto] if upto is not None else sample.messages
    for p in [*(sample.content if upto is None else ()), *(p for m in msgs for p in m.content)]:
        if isinstance(p, MediaPart):
            media = sample.media[p.media]
            if media.mime.startswith("image/") and media.name in sample.blobs:
                parts.append(image_part(sample.blobs[media.name], media.mime))
        elif isinstance(p, TextPart) and p.text.strip() and upto is None:
            parts.append({"type": "text", "text": PLACEHOLDER_RE.sub("", p.text)})
    if not any(p["type"] == "image_url" for p in parts) and upto is not None:
        for media in sample.media:  # media not referenced by the turns: send them all
            if media.mime.startswith("image/") and media.name in sample.blobs:
                parts.append(image_part(sample.blobs[media.name], media.mime))
    return parts


def questions(sample: Sample) -> list[tuple[int, str, str | None, dict[str, Any]]]:
    """(turn index, question, reference answer or None, fact record) of each user question that is
    answered in words (a placeholder answer such as ``{box:3}`` cannot be asked of a model)."""
    facts = (sample.meta.get("qa") or {}).get("facts") or []
    out = []
    q_no = 0
    for i, m in enumerate(sample.messages):
        if m.role != "user":
            continue
        q = " ".join(p.text for p in m.content if isinstance(p, TextPart)).strip()
        nxt = sample.messages[i + 1] if i + 1 < len(sample.messages) else None
        ref = " ".join(p.text for p in nxt.content if isinstance(p, TextPart)).strip() \
            if nxt is not None and nxt.role == "assistant" else None
        fact = facts[q_no] if q_no < len(facts) else {}
        q_no += 1
        if not q or PLACEHOLDER_RE.search(q) or (ref is not None and PLACEHOLDER_RE.search(ref)):
            continue
        out.append((i, q, ref or None, fact))
    return out


class ModelQA:
    def __init__(self, client: ChatClient, config: QAConfig, judge: ChatClient | None = None) -> None:
        self.client, self.config, self.judge = client, config, judge

    @property
    def params(self) -> dict[str, Any]:
        return {"temperature": self.config.temperature, "max_tokens": self.config.max_tokens}

    def _ask(self, content: list[dict[str, Any]], prompt: str, attempt: int) -> tuple[dict[str, Any], str | None]:
        """One candidate: its record, and the transport failure reason (or None)."""
        msgs = [{"role": "user", "content": [*content, {"type": "text", "text": prompt}]}]
        try:
            c = self.client.chat(msgs, self.params, attempt=attempt)
        except ChatError as e:
            return {"attempt": attempt, "error": e.reason, "detail": e.detail[:300],
                    "verdicts": [Verdict(False, "client", e.reason).to_json()]}, e.reason
        return {"attempt": attempt, "text": c.text[:4000], "cached": c.cached, "request": c.key}, None

    def _judge(self, content: list[dict[str, Any]], question: str, answer: str, attempt: int) -> Verdict:
        assert self.judge is not None
        prompt = (f"{self.config.rubric}\n\nQuestion: {question}\nAnswer: {answer}\n\nReply with only a JSON object: "
                  '{"verdict": "PASS" or "FAIL", "reason": "..."}.')
        try:
            c = self.judge.chat([{"role": "user", "content": [*content, {"type": "text", "text": prompt}]}],
                                {"temperature": 0.0, "max_tokens": 256}, attempt=attempt)
        except ChatError as e:
            return Verdict(False, "judge", f"judge unavailable: {e.reason}")
        got = parse_candidate(c.text, ("verdict",))
        if got is None:
            return Verdict(False, "judge", "judge answer is malformed")
        ok = got["verdict"].strip().upper().startswith("PASS")
        return Verdict(ok, "judge", got.get("reason") or got.get("reasoning") or ("pass" if ok else "fail"))

    def run(self, sample: Sample) -> tuple[Sample | None, dict[str, Any]]:
        """The QA sample (or None: nothing verified) and the record of every candidate."""
        record = self.collect(sample)
        return self.build(sample, record), record

    def collect(self, sample: Sample) -> dict[str, Any]:
        """Every question's candidates with their verdicts and the chosen one; raises ``NoAnswer``
        where no request got an answer at all."""
        if self.config.mode == "answer":
            items, fails = self._answer_mode(sample)
        else:
            items, fails = self._generate_mode(sample)
        answered = any("text" in c for it in items for c in it.get("candidates", []))
        if not answered and fails:
            first = fails[0]
            raise NoAnswer(first[0], f"no candidate of {len(fails)} requests got an answer; first: {first[1]}")
        return {"method": f"model:{self.config.mode}", "model": self.client.model,
                "judge": self.judge.model if self.judge else None, "questions": items}

    def build(self, sample: Sample, record: dict[str, Any]) -> Sample | None:
        """The QA sample of a collected record: the chosen candidate of each verified question."""
        got = [it for it in record["questions"] if it.get("chosen") is not None]
        if not got:
            return None
        turns: list[Message] = []
        if self.config.mode == "answer":  # the images, then the questions one by one
            lead: tuple[Any, ...] = tuple(MediaPart(m) for m in range(len(sample.media))
                                          if sample.media[m].mime.startswith("image/"))
        elif sample.content:  # an interleaved document keeps its content; the QA follows it
            lead = ()
        else:  # the seed's own conversation in its order, then the question
            lead = tuple(p for m in sample.messages for p in m.content)
        for n, it in enumerate(got):
            c = it["candidates"][it["chosen"]]
            text = c["answer"]
            if self.config.keep_reasoning and c.get("reasoning"):
                text = f"{c['reasoning']}\nAnswer: {c['answer']}"
            turns += [Message("user", (*(lead if n == 0 else ()), TextPart(it["question"]))),
                      Message("assistant", (TextPart(text),))]
        verifiers = ["rule"] if any(it.get("reference") for it in got) else []
        if any(not it.get("reference") for it in got):
            verifiers.append("self_consistency")
        if self.judge:
            verifiers.append("judge")
        meta = {**{k: v for k, v in sample.meta.items() if k not in ("scores", "qa")}, "synthetic": True,
                "generator": "qa_model", "model": record["model"], "verifier": verifiers, "qa": _stable(record)}
        return dataclasses.replace(sample, messages=tuple(turns), meta=meta)

    def _answer_mode(self, sample: Sample) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
        cfg = self.config
        content = _content(sample, upto=1)
        items, fails = [], []
        for q_idx, (turn, q, ref, fact) in enumerate(questions(sample)[: cfg.max_questions]):
            cands = []
            for a in range(cfg.k):
                rec, err = self._ask(content, f"Question: {q}\n\n{ANSWER_PROMPT}", q_idx * 1000 + a)
                if err:
                    fails.append((err, rec["detail"]))
                else:
                    parsed = parse_candidate(rec["text"])
                    if parsed is None:
                        rec["verdicts"] = [Verdict(False, "parse", "malformed").to_json()]
                    else:
                        rec |= {"answer": parsed["answer"], "reasoning": parsed.get("reasoning", ""), "verdicts": []}
                cands.append(rec)
            kind = fact.get("kind") or (answer_kind(ref) if ref else "text")
            live = [c for c in cands if "answer" in c]
            if ref is not None:
                for c in live:
                    v = rule_check(c["answer"], ref, kind=kind if kind in ("number", "text", "choice") else None,
                                   choices=fact.get("choices"), rel_tol=cfg.rel_tol)
                    c["verdicts"].append(v.to_json())
                live = [c for c in live if c["verdicts"][-1]["ok"]]
            else:
                live = self._consistent(cands, live, kind)
            chosen, why = self._choose(content, q, live, cands, q_idx)
            items.append({"turn": turn, "question": q, "reference": ref, "fact": fact.get("fact"),
                          "candidates": cands, "chosen": chosen, "why": why})
        return items, fails

    def _consistent(self, cands: list[dict[str, Any]], live: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
        best, share, idx = majority([c.get("answer") for c in cands], kind)
        keep = []
        for i, c in enumerate(cands):
            if "answer" not in c:
                continue
            if i in idx and share >= self.config.min_agreement:
                c["verdicts"].append(Verdict(True, "self_consistency", f"majority {share:.0%} of {len(cands)}").to_json())
                keep.append(c)
            elif i in idx:
                c["verdicts"].append(Verdict(False, "self_consistency",
                                             f"no consensus: majority {share:.0%} < {self.config.min_agreement:.0%}")
                                     .to_json())
            else:
                c["verdicts"].append(Verdict(False, "self_consistency", f"not_majority: majority is {best!r}").to_json())
        return [c for c in keep if c in live]

    def _choose(self, content: list[dict[str, Any]], q: str | None, live: list[dict[str, Any]],
                cands: list[dict[str, Any]], q_idx: int) -> tuple[int | None, str]:
        for c in live:
            if self.judge is not None:
                v = self._judge(content, q or c.get("question", ""), c["answer"], q_idx * 1000 + c["attempt"] % 1000)
                c["verdicts"].append(v.to_json())
                if not v.ok:
                    continue
            return cands.index(c), "first candidate that passed " + ", ".join(x["verifier"] for x in c["verdicts"])
        reasons = sorted({next((x["reason"].split(":")[0] for x in c["verdicts"] if not x["ok"]), "?") for c in cands})
        return None, "no candidate passed (" + ", ".join(reasons) + ")"

    def _generate_mode(self, sample: Sample) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
        cfg = self.config
        content = _content(sample)
        text = _seed_text(sample, cfg.max_text_chars)
        images = [p for p in content if p["type"] == "image_url"]
        base = [*images, *([{"type": "text", "text": text}] if text else [])]
        cands, fails = [], []
        for a in range(cfg.k):
            rec, err = self._ask(base, GENERATE_PROMPT, a)
            if err:
                fails.append((err, rec["detail"]))
                cands.append(rec)
                continue
            parsed = parse_candidate(rec["text"], ("question", "answer"))
            if parsed is None:
                rec["verdicts"] = [Verdict(False, "parse", "malformed").to_json()]
                cands.append(rec)
                continue
            rec |= {"question": parsed["question"], "answer": parsed["answer"], "verdicts": []}
            solve, err = self._ask(base, f"Question: {parsed['question']}\n\n{ANSWER_PROMPT}", cfg.k + a)
            if err:
                fails.append((err, solve["detail"]))
                rec["verdicts"].append(Verdict(False, "self_consistency", f"re-answer failed: {err}").to_json())
            else:
                again = parse_candidate(solve["text"])
                if again is None:
                    rec["verdicts"].append(Verdict(False, "self_consistency", "re-answer malformed").to_json())
                else:
                    v = rule_check(again["answer"], parsed["answer"], rel_tol=cfg.rel_tol)
                    rec["verdicts"].append(Verdict(v.ok, "self_consistency",
                                                   f"re-answer {again['answer'][:40]!r}: {v.reason}"
                                                   if not v.ok else "re-answer agrees").to_json())
                    rec["reasoning"] = again.get("reasoning", "")
            rec["solve"] = {k: solve.get(k) for k in ("text", "cached", "request", "error")}
            cands.append(rec)
        live = [c for c in cands if c.get("verdicts") and all(v["ok"] for v in c["verdicts"])]
        chosen, why = self._choose(base, None, live, cands, 0)
        item = {"turn": None, "question": cands[chosen]["question"] if chosen is not None else None,
                "reference": None, "fact": None, "candidates": cands, "chosen": chosen, "why": why}
        return [item], fails


def _seed_text(sample: Sample, limit: int) -> str:
    parts: list[str] = []
    for p in [*sample.content, *(p for m in sample.messages for p in m.content)]:
        if isinstance(p, TextPart) and p.text.strip():
            parts.append(PLACEHOLDER_RE.sub("", p.text).strip())
    return "\n\n".join(parts)[:limit]



def _stable(record: dict[str, Any]) -> dict[str, Any]:
    """The record without what differs between runs (whether an answer came from the cache), so
    a re-run writes the same sample and version digest."""
    def clean(c: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in c.items() if k != "cached"}
        if isinstance(out.get("solve"), dict):
            out["solve"] = {k: v for k, v in out["solve"].items() if k != "cached"}
        return out

    return {**record, "questions": [{**q, "candidates": [clean(c) for c in q["candidates"]]}
                                    for q in record["questions"]]}
