"""QA synthesis stages: ``qa_template`` (questions from exact ground truth) and ``qa_model``
(questions answered or written by an OpenAI-compatible model, with rejection sampling).

Both are filters whose ``prune`` turns a kept seed sample into its QA sample (same key, media in
the same bytes, ``meta.synthetic = true``, the generator, model and verifiers in ``meta``), so
the funnel, the rejects table and resume work as for every other stage:

* ``qa_template`` drops a sample with no ground truth as ``no_facts``;
* ``qa_model`` drops a seed none of whose candidates was verified as ``no_verified_answer``
  (every candidate's verdicts are in its scores row), and rejects a seed whose requests all
  failed with the client's reason (``timeout``, ``rate_limited``, ``server_error``,
  ``bad_response``, ``client_error``). Its requests go through the request cache in the run's
  lake (``cache/chat``), so a killed run, a resumed run and a re-run with another threshold pay
  for no request twice.

The server comes from the stage's parameters or the settings (``MMLAKE_QA_BASE_URL``,
``MMLAKE_QA_MODEL``, ``MMLAKE_QA_RPS``); the API key only from ``MMLAKE_QA_API_KEY`` (or the
variable ``api_key_env`` names), never from the spec.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from datalake.sample import Sample
from pipelines.stage import TASK_LAKE, FilterStage, Reject, register

__all__ = ["QaTemplate", "QaModel"]


@register
class QaTemplate(FilterStage):
    name = "qa_template"

    @dataclass(frozen=True)
    class Config:
        max_questions: int = 4
        seed: int = 0

        def __post_init__(self) -> None:
            if self.max_questions < 1:
                raise ValueError(f"max_questions must be >= 1, got {self.max_questions}")

    def score(self, sample: Sample) -> dict[str, Any]:
        from synth.qa.template import template_facts

        facts = template_facts(sample)
        families = sorted({f.id.split(":")[0] for f in facts})
        return {"facts": len(facts), "families": families, "media": len(sample.media)}

    def decide(self, scores: dict[str, Any]) -> str | None:
        if not scores["facts"]:
            return "no_facts"
        if not scores["media"]:
            return "no_media"
        return None

    def prune(self, sample: Sample, scores: dict[str, Any]) -> Sample:
        from synth.qa.template import template_sample

        out = template_sample(sample, seed=self.config.seed, max_questions=self.config.max_questions)
        assert out is not None  # decide() kept only samples with facts and media
        return out


def stage_client(stage: str, c: Any, lake: str | None) -> Any:
    """The chat client of a stage whose config has ``base_url``, ``model``, ``api_key_env``,
    ``rps``, ``timeout_s``, ``max_retries``, ``backoff_s`` (unset: the settings), with its request
    cache in ``lake``."""
    from datalake import Lake
    from mmlake.settings import load_settings
    from synth.qa.client import ChatClient, RequestCache

    s = load_settings()
    base_url, model = c.base_url or s.qa_base_url, c.model or s.qa_model
    if not base_url or not model:
        raise RuntimeError(f"{stage} needs a server: set base_url and model in the stage, or MMLAKE_QA_BASE_URL "
                           "and MMLAKE_QA_MODEL")
    cache = RequestCache(Lake.open(lake).store) if lake else None
    rps = c.rps if c.rps is not None else s.qa_rps
    return ChatClient(base_url, model, api_key=os.environ.get(c.api_key_env), rps=rps, timeout_s=c.timeout_s,
                      max_retries=c.max_retries, backoff_s=c.backoff_s, cache=cache)


@register
class QaModel(FilterStage):
    name = "qa_model"

    @dataclass(frozen=True)
    class Config:
        base_url: str | None = None
        model: str | None = None
        api_key_env: str = "MMLAKE_QA_API_KEY"
        mode: str = "answer"
        k: int = 4
        temperature: float = 0.8
        max_tokens: int = 512
        max_questions: int = 1
        rel_tol: float = 0.001
        min_agreement: float = 0.5
        keep_reasoning: bool = True
        rps: float | None = None
        timeout_s: float = 60.0
        max_retries: int = 4
        backoff_s: float = 0.5
        judge_base_url: str | None = None
        judge_model: str | None = None
        rubric: str | None = None
        #: where answers are cached: a lake URI (default: the run's lake), under cache/chat
        cache: str | None = None

        def __post_init__(self) -> None:
            from synth.qa.generate import QAConfig

            QAConfig(mode=self.mode, k=self.k, min_agreement=self.min_agreement)  # validates
            if self.rps is not None and self.rps <= 0:
                raise ValueError(f"rps must be > 0 (or null), got {self.rps}")
            if self.timeout_s <= 0:
                raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._engines: dict[str | None, Any] = {}

    def describe(self) -> dict[str, Any]:  # lineage: where the answers came from, never a key
        from mmlake.settings import load_settings

        d = dataclasses.asdict(self.config)
        s = load_settings()
        d["base_url"] = d["base_url"] or s.qa_base_url
        d["model"] = d["model"] or s.qa_model
        return {self.name: d}

    def _engine(self) -> Any:
        lake = self.config.cache or TASK_LAKE.get()
        if lake in self._engines:
            return self._engines[lake]
        from synth.qa.client import ChatClient
        from synth.qa.generate import JUDGE_RUBRIC, ModelQA, QAConfig

        c = self.config
        client = stage_client(self.name, c, lake)
        judge = None
        if c.judge_model:
            judge = ChatClient(c.judge_base_url or client.base_url, c.judge_model, api_key=client.api_key,
                               rps=client.rps, timeout_s=c.timeout_s, max_retries=c.max_retries, backoff_s=c.backoff_s,
                               cache=client.cache)
        qa = QAConfig(mode=c.mode, k=c.k, temperature=c.temperature, max_tokens=c.max_tokens,
                      max_questions=c.max_questions, rel_tol=c.rel_tol, min_agreement=c.min_agreement,
                      keep_reasoning=c.keep_reasoning, rubric=c.rubric or JUDGE_RUBRIC)
        self._engines[lake] = engine = ModelQA(client, qa, judge)
        return engine

    def score(self, sample: Sample) -> dict[str, Any]:
        from synth.qa.generate import NoAnswer, questions

        if self.config.mode == "answer" and not questions(sample):  # nothing to ask: no request, no server
            return {"questions": 0, "verified": 0, "candidates": 0, "cached": 0}
        try:
            record = self._engine().collect(sample)
        except NoAnswer as e:
            raise Reject(e.reason, e.detail) from None
        verified = sum(1 for q in record["questions"] if q.get("chosen") is not None)
        cands = [c for q in record["questions"] for c in q["candidates"]]
        return {"questions": len(record["questions"]), "verified": verified, "candidates": len(cands),
                "cached": sum(1 for c in cands if c.get("cached")), "qa": record}

    def decide(self, scores: dict[str, Any]) -> str | None:
        if not scores["questions"]:
            return "no_question"
        return None if scores["verified"] else "no_verified_answer"

    def prune(self, sample: Sample, scores: dict[str, Any]) -> Sample:

        out = self._engine().build(sample, scores["qa"])
        assert out is not None  # decide() kept only samples with a verified answer
        return out
