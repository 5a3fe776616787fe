"""A client for any OpenAI-compatible chat endpoint (vLLM, llama.cpp's server, Ollama, a hosted
API) with a request cache in the lake, retries and a client-side rate limit.

``ChatClient(base_url, model, cache=RequestCache(lake_store)).chat(messages, params, attempt=i)``

* **Cache**: a request is keyed by (model, messages with every image replaced by the SHA-256 of
  its bytes, generation parameters, attempt index). A hit is answered from the lake without a
  request; a successful answer is written before it is returned, so a killed and re-run job
  pays for no request twice. The cache lives in the lake's store (local disk or S3): every
  worker of every runner shares it.
* **Retries**: 429 and 5xx answers and refused connections are retried with exponential
  backoff (``Retry-After`` honoured, capped); a timeout is not retried (a slow server is not
  made slower) and, like exhausted retries, raises ``ChatError`` with a reason the caller
  accounts (``timeout``, ``rate_limited``, ``server_error``, ``bad_response``, ``client_error``).
* **Rate limit**: at most ``rps`` requests per second, shared by every process of the node
  (``datalake.store.ratelimit.NodeTokenBucket``); answers from the cache take no token.

Determinism: the attempt index goes into the request as ``seed`` (servers that support it
sample reproducibly) and into the cache key, so candidate *i* of a sample is the same request
on every run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ChatClient", "ChatError", "Completion", "RequestCache", "request_key", "image_part"]

_DATA_URL = re.compile(r"^data:([\w/+.-]+);base64,(.*)$", re.S)


class ChatError(Exception):
    """A request that gave no answer; ``reason`` is what the caller accounts."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Completion:
    text: str
    cached: bool
    key: str
    usage: Mapping[str, Any]
    finish_reason: str | None = None


def image_part(data: bytes, mime: str) -> dict[str, Any]:
    """An OpenAI ``image_url`` content part holding the image as a data URL."""
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{base64.b64encode(data).decode()}"}}


def _canonical(messages: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The messages with each data URL replaced by the hash of its bytes (the cache key and the
    record stored with an answer never hold the images)."""
    out: list[Any] = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            parts = []
            for p in content:
                url = p.get("image_url", {}).get("url") if isinstance(p, Mapping) else None
                hit = _DATA_URL.match(url) if isinstance(url, str) else None
                if hit:
                    digest = hashlib.sha256(base64.b64decode(hit.group(2))).hexdigest()
                    parts.append({"type": "image", "mime": hit.group(1), "sha256": digest})
                else:
                    parts.append(p)
            content = parts
        out.append({**m, "content": content})
    return out


def request_key(model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any], attempt: int) -> str:
    body = {"model": model, "messages": _canonical(messages), "params": dict(params), "attempt": attempt}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class RequestCache:
    """Answers by request key under ``prefix`` of a store (``cache/chat/ab/abcd....json``)."""

    def __init__(self, store: Any, prefix: str = "cache/chat") -> None:
        self.store, self.prefix = store, prefix.rstrip("/")

    def _path(self, key: str) -> str:
        return f"{self.prefix}/{key[:2]}/{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        if not self.store.exists(path):
            return None
        try:
            rec = json.loads(self.store.read(path))
        except (ValueError, OSError):
            return None  # a torn or unreadable entry is a miss, and is rewritten
        return rec if isinstance(rec, dict) and "response" in rec else None

    def put(self, key: str, record: Mapping[str, Any]) -> None:
        self.store.put(self._path(key), json.dumps(record, sort_keys=True).encode())


class ChatClient:
    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, rps: float | None = None,
                 timeout_s: float = 60.0, max_retries: int = 4, backoff_s: float = 0.5, max_backoff_s: float = 20.0,
                 cache: RequestCache | None = None, bucket_dir: str | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {base_url!r}")
        if not model:
            raise ValueError("name the model the server serves (model: ...)")
        self.base_url, self.model = base_url.rstrip("/"), model
        self.timeout_s, self.max_retries = timeout_s, max_retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.cache, self.api_key, self.rps = cache, api_key, rps
        self._bucket = None
        if rps is not None:
            from datalake.store.ratelimit import NodeTokenBucket

            where = hashlib.sha256(self.base_url.encode()).hexdigest()[:16]
            root = Path(bucket_dir or tempfile.gettempdir()) / f"mmlake-chat-{where}-{rps:g}.bucket"
            self._bucket = NodeTokenBucket(root, rate=rps, burst=1.0)
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)))
        self._lock = threading.Lock()
        self.stats: dict[str, int] = {"requests": 0, "cache_hits": 0, "retries": 0, "errors": 0}

    def close(self) -> None:
        self._http.close()

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] = self.stats.get(name, 0) + 1

    def chat(self, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any] | None = None, *,
             attempt: int = 0) -> Completion:
        params = dict(params or {})
        key = request_key(self.model, messages, params, attempt)
        if self.cache is not None:
            rec = self.cache.get(key)
            if rec is not None:
                self._count("cache_hits")
                return self._completion(rec["response"], key, cached=True)
        body = {"model": self.model, "messages": list(messages), "seed": attempt, **params}
        response = self._post(body)
        if self.cache is not None:  # a paid answer is kept even where it is unusable (bad_response)
            self.cache.put(key, {"model": self.model, "messages": _canonical(messages), "params": params,
                                 "attempt": attempt, "response": response, "at": time.time()})
        return self._completion(response, key, cached=False)

    def _post(self, body: dict[str, Any]) -> str:
        """The body of a 200 answer, after retries."""
        url = f"{self.base_url}/chat/completions"
        last = ""
        for retry in range(self.max_retries + 1):
            if retry:
                self._count("retries")
            if self._bucket is not None:
                self._bucket.acquire()
            self._count("requests")
            try:
                r = self._http.post(url, json=body)
            except httpx.TimeoutException as exc:
                self._count("errors")
                raise ChatError("timeout", f"no answer from {url} within {self.timeout_s:g} s ({type(exc).__name__})") \
                    from None
            except httpx.TransportError as exc:  # refused / reset: the server may be restarting
                last, wait = f"{type(exc).__name__}: {exc}", None
                reason = "server_error"
            else:
                if r.status_code == 200:
                    return r.text
                last = f"HTTP {r.status_code}: {r.text[:200]}"
                if r.status_code == 429:
                    reason = "rate_limited"
                elif r.status_code >= 500:
                    reason = "server_error"
                else:
                    self._count("errors")
                    raise ChatError("client_error", f"{url} refused the request ({last}); check model, key and "
                                    "parameters")
                wait = _retry_after(r.headers.get("retry-after"))
            if retry == self.max_retries:
                break
            delay = self.backoff_s * (2 ** retry) if wait is None else wait
            time.sleep(min(self.max_backoff_s, delay))
        self._count("errors")
        raise ChatError(reason, f"{url} after {self.max_retries + 1} attempts: {last}")

    def _completion(self, body: str, key: str, *, cached: bool) -> Completion:
        try:
            response = json.loads(body)
        except ValueError:
            self._count("errors")
            raise ChatError("bad_response", f"the server answered 200 with a body that is not JSON: "
                            f"{body[:120]!r}") from None
        try:
            choice = response["choices"][0]
            text = choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            self._count("errors")
            raise ChatError("bad_response", f"answer has no choices[0].message.content: {body[:160]!r}") from None
        if not isinstance(text, str):
            self._count("errors")
            raise ChatError("bad_response", f"choices[0].message.content is {type(text).__name__}, not text")
        return Completion(text, cached, key, response.get("usage") or {}, choice.get("finish_reason"))


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
