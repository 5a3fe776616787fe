"""QA synthesis: verifiers, the OpenAI-compatible client against a real HTTP server on
127.0.0.1 (retries, timeouts, cache, rate limit), rejection sampling, and template QA whose
answers are recomputed here from the generators' data."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path

import pytest

from datalake.store import open_store
from synth.knowledge import knowledge_samples
from synth.qa.client import ChatClient, ChatError, RequestCache, image_part, request_key
from synth.qa.generate import ModelQA, QAConfig
from synth.qa.template import template_facts, template_sample
from synth.qa.verify import majority, parse_candidate, parse_quantity, rule_check

from .qa_server import Script, ScriptedServer

# -- verifiers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "reference", "ok"), [
    ("12 cm", "0.12 m", True), ("about 12.0 cm", "120 mm", True), ("12 kg", "12 cm", False),
    ("90°", "1.5708 rad", True), ("90 degrees", "1.7 rad", False), ("1141.11", "1134.11", False), ("25%", "0.25", True), ("10%", "10", True),
    ("153.94", "153.94", True), ("153.9", "153.94", True), ("160", "153.94", False), ("1,311", "1311", True),
    ("The answer is 3 or 4", "3", False), ("", "3", False), ("−5", "-5", True),
    ("12 square cm", "0.0012 m2", True), ("2 h", "120 min", True),
])
def test_numbers_and_units(answer: str, reference: str, ok: bool) -> None:
    assert rule_check(answer, reference, kind="number").ok is ok


def test_text_choice_and_parsing() -> None:
    assert rule_check("The Apples.", "apples").ok
    assert not rule_check("pears", "apples").ok
    assert rule_check("B) blue", "B", kind="choice", choices=["red", "blue"]).ok
    assert rule_check("blue", "B", kind="choice", choices=["red", "blue"]).ok
    assert not rule_check("A", "B", kind="choice", choices=["red", "blue"]).ok
    assert parse_candidate('```json\n{"reasoning": "r", "answer": 12}\n```') == {"answer": "12", "reasoning": "r"}
    assert parse_candidate("step one\nstep two\nAnswer: 7 cm") == {"answer": "7 cm", "reasoning": "step one\nstep two"}
    assert parse_candidate("I am not sure.") is None
    assert parse_candidate('{"question": "q?", "answer": "a"}', ("question", "answer")) == {"question": "q?",
                                                                                           "answer": "a"}
    assert parse_candidate('{"answer": ""}') is None
    assert parse_quantity("between 3 and 4") is None and parse_quantity("3 and 3.0") is not None
    best, share, idx = majority(["4", "4.0", "5", None], "number")
    assert (best, share, idx) == ("4", 0.5, [0, 1])


# -- template QA ---------------------------------------------------------------------------------


def test_template_answers_are_recomputed_from_the_generating_data() -> None:
    samples = knowledge_samples(24, seed=5)
    checked = 0
    for s in samples:
        t = s.meta["truth"]
        facts = {f.id: f for f in template_facts(s)}
        assert facts, s.key
        for fid, f in facts.items():
            assert len(f.phrasings) >= 1 and len(set(f.phrasings)) == len(f.phrasings)
            if fid.startswith("chart.value:"):
                assert int(f.answer) == t["values"][t["labels"].index(fid.split(":")[1])]
            elif fid == "chart.total":
                assert int(f.answer) == sum(t["values"])
            elif fid.startswith("table.cell:"):
                _, item, col = fid.split(":")
                row = next(r for r in t["rows"] if r[0] == item)
                assert int(f.answer) == row[t["columns"].index(col)]
            elif fid.startswith("table.total:"):
                j = t["columns"].index(fid.split(":")[1])
                assert int(f.answer) == sum(r[j] for r in t["rows"])
            elif fid == "geometry.area" and t["shape"] == "circle":
                assert math.isclose(float(f.answer), math.pi * t["radius"] ** 2, abs_tol=0.005)
            elif fid == "geometry.interior":
                n = t["sides"]
                assert math.isclose(float(f.answer.rstrip("°")), 180 * (n - 2) / n, abs_tol=0.05)
            else:
                continue
            checked += 1
        # the generator's own question is among the facts, with the same answer
        q = s.messages[0].content[1].text
        a = s.messages[1].content[0].text
        same = [f for f in facts.values() if q in f.phrasings]
        assert same and rule_check(same[0].answer, a).ok, (s.key, q, a, same)
    assert checked > 100
    one = template_sample(samples[0], seed=1, max_questions=3)
    again = template_sample(samples[0], seed=1, max_questions=3)
    other = [template_sample(samples[0], seed=k, max_questions=3) for k in range(2, 8)]
    assert one == again and any(o != one for o in other)  # a pure function of (seed, key)
    assert one is not None and one.meta["synthetic"] and one.meta["generator"] == "qa_template"
    assert [m.role for m in one.messages] == ["user", "assistant"] * 3
    assert one.blobs == samples[0].blobs


def test_template_qa_on_gui_elements_and_text_layers() -> None:
    from datalake.sample import Annotation, Media, MediaPart, Message, Sample, Source, TextPart

    anns = (Annotation(0, "box", xyxy=(0, 0, 50, 20), label="button", text="Save", role="ui_element"),
            Annotation(0, "box", xyxy=(60, 0, 110, 20), label="button", text="Cancel", role="ui_element"),
            Annotation(0, "box", xyxy=(0, 30, 80, 50), label="link", text="Help", role="ui_element"),
            Annotation(0, "polygon", points=((0, 60), (90, 60), (90, 80), (0, 80)), text="Chapter one",
                       role="text_layer"),
            Annotation(0, "polygon", points=((0, 90), (90, 90), (90, 99), (0, 99)), text="read by OCR",
                       role="ocr_line"))
    s = Sample(key="g1", kind="agent", source=Source("file:///x"), media=(Media("0.png", "image/png", 120, 100),),
               messages=(Message("user", (MediaPart(0), TextPart("hi"))), Message("assistant", (TextPart("ok"),))),
               annotations=anns, blobs={"0.png": b"x"})
    facts = {f.id: f for f in template_facts(s)}
    assert facts["gui.read:1"].answer == "Cancel"
    assert facts["gui.find:2"].answer == "{box:2}"
    assert facts["gui.count:button"].answer == "2" and facts["gui.count:link"].answer == "1"
    assert facts["text.read:3"].answer == "Chapter one"
    assert "text.read:4" not in facts  # an OCR engine's reading is not ground truth
    icon = Sample(key="i1", kind="agent", source=Source("file:///x"), media=(Media("0.png", "image/png", 20, 20),),
                  messages=s.messages, meta={"task": "icon", "label": "Print"}, blobs={"0.png": b"x"})
    assert [(f.id, f.answer) for f in template_facts(icon)] == [("gui.icon", "Print")]
    out = template_sample(s, max_questions=20)
    assert out is not None and len(out.messages) == 2 * len(facts)  # every placeholder points somewhere (validated)


# -- the client ----------------------------------------------------------------------------------


def _ask(client: ChatClient, q: str, attempt: int = 0) -> str:
    return client.chat([{"role": "user", "content": [{"type": "text", "text": f"Question: {q}\n\nanswer"}]}],
                       {"temperature": 0.5}, attempt=attempt).text


def test_client_retries_throttling_and_errors_and_counts_timeouts(tmp_path: Path) -> None:
    script = Script(answers={"t": "1", "f": "2", "s": "3", "g": "4"}, throttle={"t"}, flaky={"f"}, slow={"s"},
                    slow_s=1.5, garbage={"g"})
    with ScriptedServer(script) as srv:
        c = ChatClient(srv.url, "m", timeout_s=0.6, max_retries=3, backoff_s=0.05)
        assert json.loads(_ask(c, "t", 2))["answer"] == "1"
        assert json.loads(_ask(c, "f", 2))["answer"] == "2"
        with pytest.raises(ChatError) as e:
            _ask(c, "s", 2)
        assert e.value.reason == "timeout"
        with pytest.raises(ChatError) as e:
            _ask(c, "g", 2)
        assert e.value.reason == "bad_response"
        deadline = time.monotonic() + 5
        while len(srv.log) < 6 and time.monotonic() < deadline:  # the slow answer is logged when it is late
            time.sleep(0.05)
        statuses = sorted((r["question"], r["status"]) for r in srv.log)
        assert statuses == [("f", 200), ("f", 500), ("g", 200), ("s", -200), ("t", 200), ("t", 429)]
        assert c.stats["retries"] == 2
        dead = ChatClient(srv.url.replace(str(srv.httpd.server_address[1]), "1"), "m", max_retries=1, backoff_s=0.01)
        with pytest.raises(ChatError) as e:
            _ask(dead, "t")
        assert e.value.reason == "server_error" and "2 attempts" in e.value.detail
    with pytest.raises(ValueError, match="http"):
        ChatClient("127.0.0.1:8000", "m")


def test_cache_answers_repeats_without_a_request_and_keys_images_by_hash(tmp_path: Path) -> None:
    store = open_store(tmp_path / "lake")
    with ScriptedServer(Script(answers={"q": "5"})) as srv:
        c = ChatClient(srv.url, "m", cache=RequestCache(store))
        first = [_ask(c, "q", a) for a in range(4)]
        again = ChatClient(srv.url, "m", cache=RequestCache(store))  # another worker, same lake
        assert [_ask(again, "q", a) for a in range(4)] == first
        assert len(srv.log) == 4 and again.stats["requests"] == 0 and again.stats["cache_hits"] == 4
        other = ChatClient(srv.url, "other-model", cache=RequestCache(store))
        _ask(other, "q", 0)
        assert len(srv.log) == 5  # the model is part of the key
    img = [{"role": "user", "content": [image_part(b"\x89PNG-bytes", "image/png"), {"type": "text", "text": "x"}]}]
    k1 = request_key("m", img, {"t": 1}, 0)
    assert k1 == request_key("m", json.loads(json.dumps(img)), {"t": 1}, 0)
    assert k1 != request_key("m", [{"role": "user", "content": [image_part(b"\x89PNG-other", "image/png"),
                                                                 {"type": "text", "text": "x"}]}], {"t": 1}, 0)
    assert k1 != request_key("m", img, {"t": 1}, 1) and k1 != request_key("m", img, {"t": 2}, 0)
    stored = list(store.list("cache/chat"))
    assert len(stored) == 5 and all(b"base64" not in store.read(p) for p in stored)


def test_rate_limit_holds_across_clients_of_one_node(tmp_path: Path) -> None:
    with ScriptedServer(Script()) as srv:
        a = ChatClient(srv.url, "m", rps=5.0, bucket_dir=str(tmp_path))
        b = ChatClient(srv.url, "m", rps=5.0, bucket_dir=str(tmp_path))
        t0 = time.monotonic()
        for i in range(6):
            _ask(a if i % 2 else b, f"q{i}")
        took = time.monotonic() - t0
        times = [r["t"] for r in srv.log]
    assert took >= 5 / 5.0 * 0.9, took
    gaps = [y - x for x, y in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.2 * 0.8, gaps


# -- rejection sampling ----------------------------------------------------------------------------


def test_answer_mode_keeps_only_answers_that_match_the_ground_truth(tmp_path: Path) -> None:
    seeds = [template_sample(s, max_questions=2) for s in knowledge_samples(8, seed=2)]
    asked = Counter(m.content[-1].text for s in seeds if s for m in s.messages[::2])
    seeds = [s for s in seeds if s and all(asked[m.content[-1].text] == 1 for m in s.messages[::2])]  # the server
    answers = {m.content[-1].text: n.content[0].text for s in seeds  # knows answers by question text
               for m, n in zip(s.messages[::2], s.messages[1::2], strict=True)}
    assert len(seeds) >= 5
    hard = next(iter(answers))
    with ScriptedServer(Script(answers=answers, always_wrong={hard})) as srv:
        qa = ModelQA(ChatClient(srv.url, "vlm", cache=RequestCache(open_store(tmp_path))), QAConfig(k=4, max_questions=2))
        kept = 0
        for s in seeds:
            assert s is not None
            out, rec = qa.run(s)
            for it in rec["questions"]:
                verdicts = [c["verdicts"] for c in it["candidates"]]
                assert all(v and all(x["reason"] for x in v) for v in verdicts)  # every candidate says why
                assert [v[-1]["ok"] for v in verdicts] == ([False] * 4 if it["question"] == hard
                                                          else [False, False, True, True])
                if it["question"] != hard:
                    assert verdicts[1][0] == {"ok": False, "verifier": "parse", "reason": "malformed"}
                assert it["chosen"] == (None if it["question"] == hard else 2)
            if out is None:
                continue
            kept += 1
            assert out.meta["synthetic"] and out.meta["model"] == "vlm" and out.meta["verifier"] == ["rule"]
            for m, n in zip(out.messages[::2], out.messages[1::2], strict=True):
                q = m.content[-1].text
                assert n.content[0].text.endswith(f"Answer: {answers[q]}")
        assert kept == len(seeds) - 1 or kept == len(seeds)  # only the seed asking `hard` alone can go


def test_generate_mode_self_consistency_and_judge(tmp_path: Path) -> None:
    from datalake.sample import Sample, Source, TextPart

    def other(prompt: str, attempt: int) -> str:
        if "Judge" in prompt:  # the judge fails the first pair it sees
            return json.dumps({"verdict": "FAIL" if "capital-2" in prompt else "PASS", "reason": "checked"})
        return json.dumps({"question": f"What is capital-{attempt}?", "answer": "Paris"})

    script = Script(answers={f"What is capital-{i}?": "Paris" for i in range(4)}, other=other)
    doc = Sample(key="d1", kind="interleaved", source=Source("file:///d"),
                 content=(TextPart("Paris is the capital of France. " * 5),))
    with ScriptedServer(script) as srv:
        client = ChatClient(srv.url, "llm")
        qa = ModelQA(client, QAConfig(mode="generate", k=4), judge=ChatClient(srv.url, "judge"))
        out, rec = qa.run(doc)
    cands = rec["questions"][0]["candidates"]
    # candidate a is re-answered as attempt k+a: 4 -> wrong, 5 -> malformed, 6 and 7 -> right
    assert [c["verdicts"][0]["ok"] for c in cands] == [False, False, True, True]
    assert "re-answer" in cands[0]["verdicts"][0]["reason"] and "malformed" in cands[1]["verdicts"][0]["reason"]
    assert cands[2]["verdicts"][-1] == {"ok": False, "verifier": "judge", "reason": "checked"}  # the judge said no
    assert rec["questions"][0]["chosen"] == 3 and cands[3]["verdicts"][-1]["ok"]
    assert out is not None and out.content == doc.content and out.messages[0].content[-1].text == "What is capital-3?"
    assert out.meta["verifier"] == ["self_consistency", "judge"]
