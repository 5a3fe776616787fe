"""A scripted OpenAI-compatible chat server on 127.0.0.1 for the QA tests: real HTTP, answers
decided by the request (question, attempt seed), and a log of every request it received.

The default script, per question with a known answer, by attempt ``a`` (the request's
``seed``): ``a % 4 == 0`` a wrong answer, ``1`` a malformed one (no JSON, no ``Answer:``
line), ``2`` the right answer as JSON with its reasoning, ``3`` the right answer on an
``Answer:`` line. Questions in ``always_wrong`` are answered wrongly every time, those in
``slow`` after ``slow_s`` seconds, those in ``throttle``/``flaky`` get a 429 / 500 on their
first request, ``garbage`` a 200 whose body is not JSON.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_Q = re.compile(r"Question: (.*?)\n\n", re.S)


def body_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def wrong(answer: str) -> str:
    try:
        return str(float(answer.rstrip("%°")) + 7)
    except ValueError:
        return "something else entirely"


@dataclass
class Script:
    answers: dict[str, str] = field(default_factory=dict)
    always_wrong: set[str] = field(default_factory=set)
    slow: set[str] = field(default_factory=set)
    slow_s: float = 3.0
    throttle: set[str] = field(default_factory=set)
    flaky: set[str] = field(default_factory=set)
    garbage: set[str] = field(default_factory=set)
    #: called with the number of requests received so far (1-based), before answering; return
    #: False to drop the connection without an answer
    on_request: Callable[[int], bool] | None = None
    #: a custom reply for prompts without a "Question:" (generate mode, the judge)
    other: Callable[[str, int], str] | None = None


class ScriptedServer:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.log: list[dict[str, Any]] = []  # time, hash, question, attempt, status
        self.bodies: list[dict[str, Any]] = []  # every request body, in arrival order
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.handle(self, json.loads(raw))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answered(self) -> set[str]:
        return {r["hash"] for r in self.log if r["status"] == 200}

    def _record(self, h: str, q: str | None, attempt: int, status: int) -> None:
        with self._lock:
            self.log.append({"t": time.monotonic(), "hash": h, "question": q, "attempt": attempt, "status": status})

    def handle(self, req: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        s = self.script
        h = body_hash(body)
        with self._lock:
            self.bodies.append(body)
        prompt = "\n".join(p.get("text", "") for m in body["messages"] for p in
                           (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}]))
        hit = None if "Judge the" in prompt else _Q.search(prompt)  # a judge's prompt goes to ``other``
        q = hit.group(1).strip() if hit else None
        attempt = int(body.get("seed", 0)) % 1000
        with self._lock:
            n = len(self.log) + 1
            first = q is not None and q not in self._seen
            if q is not None:
                self._seen[q] = self._seen.get(q, 0) + 1
        if s.on_request is not None and not s.on_request(n):
            self._record(h, q, attempt, 0)
            req.close_connection = True
            return
        if q in s.throttle and first:
            return self._send(req, h, q, attempt, 429, {"error": "slow down"}, {"Retry-After": "0.05"})
        if q in s.flaky and first:
            return self._send(req, h, q, attempt, 500, {"error": "overloaded"})
        if q in s.slow:  # answered after the client's timeout: logged as "late", never as answered
            time.sleep(s.slow_s)
        if q in s.garbage:
            return self._send(req, h, q, attempt, 200, None, raw=b"<html>proxy error</html>")
        if q is None:
            text = s.other(prompt, attempt) if s.other else "no idea"
        else:
            ref = s.answers.get(q, "42")
            a = attempt % 4
            if q in s.always_wrong or a == 0:
                text = json.dumps({"reasoning": "I guessed.", "answer": wrong(ref)})
            elif a == 1:
                text = "Hmm, this is hard to say for sure."
            elif a == 2:
                text = json.dumps({"reasoning": "Read it off the figure.", "answer": ref})
            else:
                text = f"Looking at the figure carefully.\nAnswer: {ref}"
        self._send(req, h, q, attempt, -200 if q in s.slow else 200, {"id": f"c{n}", "object": "chat.completion", "model": body["model"],
                                             "choices": [{"index": 0, "finish_reason": "stop",
                                                          "message": {"role": "assistant", "content": text}}],
                                             "usage": {"prompt_tokens": 10, "completion_tokens": 5}})

    def _send(self, req: BaseHTTPRequestHandler, h: str, q: str | None, attempt: int, status: int,
              payload: Any, headers: dict[str, str] | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        late, status = status < 0, abs(status)
        try:
            req.send_response(status)
            for k, v in (headers or {}).items():
                req.send_header(k, v)
            req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(data)))
            req.end_headers()
            req.wfile.write(data)
        except OSError:  # the client gave up (a timeout): it got no answer
            status = -status
        if late:
            status = -abs(status)
        self._record(h, q, attempt, status)
