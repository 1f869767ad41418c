"""Live scoring endpoints over HTTP (httpx): MLflow's scoring protocol and the Open Inference Protocol (KServe v2).

``model: {url: http://HOST:PORT/invocations, protocol: mlflow, features: [a, b, c], threshold: 0.6}``

- ``mlflow``: ``POST url`` with ``{"dataframe_split": {"columns": features, "data": rows}}`` (NaN sent as JSON
  ``null``); the answer is ``{"predictions": [...]}`` of numbers, ``[p0, p1]`` lists or ``{class: p}`` dicts.
- ``kserve_v2``: ``POST .../v2/models/NAME/infer`` (the URL as given, or built from ``url`` + ``model_name``) with
  one FP32 tensor of shape ``[n, d]`` (data flat, row-major); the answer's output tensor (``[n]``, ``[n, 1]`` or ``[n, 2]``) gives
  P(fraud). JSON has no NaN, so missing values go as ``null``.

``headers`` (e.g. ``Authorization: Bearer ${TOKEN}``) go with every request; ``${VAR}`` is read from the
environment, and headers are kept out of the card and the hash.

Rows go in batches of ``batch_size``, at most ``concurrency`` requests at a time and ``max_rps`` requests per
second. Connection errors and 5xx answers are retried ``retries`` times with exponential backoff (a 5xx means
the server did not score the batch, so a retried batch is scored once); a read timeout is not retried (the
server may have scored the rows) and fails the call, as does a 4xx (with the server's message) or an answer of
the wrong length or type. A call either returns every score or raises: the oracle charges and logs a query
only for scores it got back, so each row the endpoint scored is one logged, paid query.

The sha256 of an endpoint is the hash of URL + protocol + features: there is no file to hash.
"""
from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import ModelError
from .base import TargetModel, bytes_sha256, first_line, resolve_features
from .registry import register_adapter

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

PROTOCOLS = ("mlflow", "kserve_v2")
PROBABILITY_KEYS = ("1", 1, "probability", "proba", "score", "fraud_probability")
MAX_TIMEOUT_S = 3600.0  # model.timeout: an hour for one answer is already a hang
MIN_RPS = 1e-3  # model.max_rps: one request per 1,000 s at the slowest (smaller waits overflowed time.sleep)
MAX_ANSWER_BYTES = 256 << 20  # an answer for 1,000,000 rows (batch_size's limit) is a few tens of MB


class RateLimiter:
    """At most ``rate`` acquisitions per second, shared by threads (each waits for its own slot)."""

    def __init__(self, rate: float | None):
        self.interval = 1.0 / rate if rate else 0.0
        self.next = 0.0
        self.lock = threading.Lock()

    def acquire(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next)
            self.next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


@register_adapter("http")
class HTTPModel(TargetModel):
    remote = True
    location_field = "model.url"

    def __init__(self, url: str, protocol: str, feature_names: Sequence[str], *, timeout: float = 30.0,
                 retries: int = 3, batch_size: int = 1000, concurrency: int = 1, max_rps: float | None = None,
                 model_name: str | None = None, input_name: str = "input-0", headers: dict | None = None,
                 backoff: float = 0.05):
        import httpx

        if protocol not in PROTOCOLS:
            raise ModelError(f"unknown protocol {protocol!r}; use {' or '.join(PROTOCOLS)}", file=url,
                             field="model.protocol")
        if not 0 < float(timeout) <= MAX_TIMEOUT_S:
            raise ModelError(f"timeout must be in (0, {MAX_TIMEOUT_S:g}] seconds (got {timeout!r})", file=url,
                             field="model.timeout")
        if max_rps is not None and not float(max_rps) >= MIN_RPS:
            raise ModelError(f"max_rps must be at least {MIN_RPS:g} requests per second (got {max_rps!r})", file=url,
                             field="model.max_rps")
        self.base_url = url
        self.protocol = protocol
        self.url = _infer_url(url, protocol, model_name)
        names = resolve_features(None, None, feature_names, source=url)
        ident = json.dumps({"url": self.url, "protocol": protocol, "features": list(names)}, sort_keys=True)
        card = {"kind": "http", "url": self.url, "protocol": protocol, "features": list(names),
                "sha256_rule": "sha256 of URL + protocol + features (an endpoint has no file to hash)",
                "timeout_s": timeout, "retries": retries, "batch_size": batch_size, "concurrency": concurrency,
                "max_rps": max_rps}
        super().__init__(names, sha256=bytes_sha256(ident.encode()), card=card, source=self.url, path=None)
        self.timeout, self.retries, self.backoff = float(timeout), int(retries), float(backoff)
        self.batch_size, self.concurrency = int(batch_size), int(concurrency)
        self.input_name = input_name
        self.limiter = RateLimiter(max_rps)
        self.client = httpx.Client(timeout=httpx.Timeout(self.timeout),
                                   limits=httpx.Limits(max_connections=self.concurrency,
                                                       max_keepalive_connections=self.concurrency),
                                   headers={"content-type": "application/json", **(headers or {})})
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        #: rows in answered batches, requests sent (with retries), retries
        self.rows_scored = self.requests = self.retried = 0

    @classmethod
    def from_spec(cls, spec: Any, *, source: str | None = None,
                  features: Sequence[str] | None = None) -> "HTTPModel":
        get = spec.get if isinstance(spec, dict) else lambda k, d=None: getattr(spec, k, d)
        url = str(get("url"))
        features = features if features is not None else get("features")
        if not features:
            raise ModelError("an endpoint needs model.features: the names of its inputs, in order", file=source or url,
                             field="model.features")
        kw: dict[str, Any] = {k: get(k) for k in ("timeout", "retries", "batch_size", "concurrency", "max_rps", "model_name",
                                  "input_name") if get(k) is not None}
        headers = get("headers")
        if headers:
            kw["headers"] = expand_headers(headers, url)
        return cls(url, get("protocol") or "mlflow", list(features), **kw)

    # -- scoring ---------------------------------------------------------------------------------------------------
    def predict_score(self, X: np.ndarray) -> np.ndarray:
        n = len(X)
        if n == 0:
            return np.empty(0)
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"expected rows of {len(self.feature_names)} features, got shape {X.shape}")
        batches = [X[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        if len(batches) == 1 or self.concurrency == 1:
            parts = [self._score_batch(b) for b in batches]
        else:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="fraudsim-http")
            parts = list(self._pool.map(self._score_batch, batches))
        return np.concatenate(parts)

    def payload(self, X: np.ndarray) -> bytes:
        """The request body for a batch (public so benchmarks post exactly what the adapter posts)."""
        if self.protocol == "mlflow":
            body: dict = {"dataframe_split": {"columns": list(self.feature_names), "data": _rows(X)}}
        else:  # the tensor's data flat, in row-major order (the protocol's canonical form)
            body = {"inputs": [{"name": self.input_name, "shape": list(X.shape), "datatype": "FP32",
                                "data": _rows(X.reshape(-1))}]}
        return json.dumps(body, allow_nan=False).encode()

    def _score_batch(self, X: np.ndarray) -> np.ndarray:
        import httpx

        content = self.payload(X)
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), 2.0))
                with self._lock:
                    self.retried += 1
            self.limiter.acquire()
            with self._lock:
                self.requests += 1
            try:
                resp = self._post(content)
            except httpx.TimeoutException as exc:
                if isinstance(exc, httpx.ConnectTimeout):
                    last = f"connection timed out ({first_line(exc)})"
                    continue
                raise ModelError(f"no answer within {self.timeout:g} s (raise model.timeout)", file=self.url,
                                 field="model.timeout") from None
            except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
                last = f"cannot connect ({first_line(exc)})"
                continue
            except httpx.HTTPError as exc:
                raise ModelError(f"request failed ({first_line(exc)})", file=self.url, field="model.url") from None
            if resp.status_code >= 500:
                last = f"HTTP {resp.status_code} {_message(resp)}".rstrip()
                continue
            if resp.status_code >= 400:
                raise ModelError(f"the endpoint refused the request: HTTP {resp.status_code} {_message(resp)}".rstrip(),
                                 file=self.url, field="model.url")
            scores = self._parse(resp, len(X))
            with self._lock:
                self.rows_scored += len(X)
            return scores
        raise ModelError(f"endpoint unreachable after {self.retries + 1} tries: {last}", file=self.url,
                         field="model.url")

    def _post(self, content: bytes):
        """POST and read the whole answer within ``timeout`` seconds in all and :data:`MAX_ANSWER_BYTES`: httpx's
        timeout bounds each read, so a server trickling a byte at a time held a run forever."""
        import httpx

        deadline = time.monotonic() + self.timeout
        with self.client.stream("POST", self.url, content=content) as resp:
            body, size = [], 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise ModelError(f"the answer is over {MAX_ANSWER_BYTES >> 20} MB", file=self.url,
                                     field="model.url")
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("the answer did not end in time")
                body.append(chunk)
            return httpx.Response(resp.status_code, content=b"".join(body), request=resp.request,
                                  headers={"content-type": resp.headers.get("content-type", "application/json")})

    def _parse(self, resp, n: int) -> np.ndarray:
        try:
            body = resp.json()
        except RecursionError:
            raise ModelError("the answer is JSON nested too deeply to read", file=self.url, field="model.url") from None
        except ValueError:
            raise ModelError(f"the answer is not JSON ({resp.text[:80]!r})", file=self.url, field="model.url") from None
        if self.protocol == "mlflow":
            preds = body.get("predictions") if isinstance(body, dict) else body
            if not isinstance(preds, list):
                raise ModelError("the answer has no 'predictions' list", file=self.url, field="model.url")
            if len(preds) != n:
                raise ModelError(f"the answer has {len(preds)} predictions for {n} rows", file=self.url,
                                 field="model.url")
            out = _probabilities(preds, self.url)
        else:
            outputs = body.get("outputs") if isinstance(body, dict) else None
            if not isinstance(outputs, list) or not outputs or not isinstance(outputs[0], dict):
                raise ModelError("the answer has no 'outputs' tensor list", file=self.url, field="model.url")
            named = [o for o in outputs if "prob" in str(o.get("name", "")).lower()]
            out_t = (named or outputs)[0]
            try:
                data = np.asarray(out_t.get("data"), dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                raise ModelError("the output tensor's data are not numbers", file=self.url, field="model.url") from None
            shape = out_t.get("shape") or [len(data)]
            if len(data) == 2 * n and (isinstance(shape, list) and len(shape) == 2 and shape[-1] == 2):
                data = data.reshape(n, 2)[:, 1]
            if len(data) != n:
                raise ModelError(f"the output tensor has {len(data)} values for {n} rows", file=self.url,
                                 field="model.url")
            out = data
        return self.check_scores(out, n)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        self.client.close()

    def describe(self) -> str:
        return f"{self.protocol} endpoint {self.url} ({len(self.feature_names)} features)"


def expand_headers(headers: dict, url: str) -> dict[str, str]:
    """Header values with ``${VAR}`` taken from the environment (so tokens stay out of scenario files and runs)."""
    import os
    import re

    out = {}
    for key, value in headers.items():
        missing = [v for v in re.findall(r"\$\{(\w+)\}", str(value)) if v not in os.environ]
        if missing:
            raise ModelError(f"header {key!r} needs the environment variable {missing[0]}, which is not set",
                             file=url, field=f"model.headers.{key}")
        out[str(key)] = re.sub(r"\$\{(\w+)\}", lambda m: os.environ[m.group(1)], str(value))
    return out


def _infer_url(url: str, protocol: str, model_name: str | None) -> str:
    if protocol != "kserve_v2" or "/v2/models/" in url:
        return url
    if not model_name:
        raise ModelError("a kserve_v2 endpoint needs model.model_name or the full .../v2/models/NAME/infer URL",
                         file=url, field="model.model_name")
    return f"{url.rstrip('/')}/v2/models/{model_name}/infer"


def _rows(X: np.ndarray) -> list:
    nan = np.isnan(X)
    if not nan.any():
        return X.tolist()
    obj = X.astype(object)
    obj[nan] = None
    return obj.tolist()


def _message(resp) -> str:
    try:
        body = resp.json()
    except RecursionError:
        return "(an answer nested too deeply to read)"
    except ValueError:
        return resp.text.strip().splitlines()[0][:200] if resp.text.strip() else ""
    if isinstance(body, dict):
        for key in ("message", "error", "detail", "error_code"):
            if body.get(key):
                return str(body[key]).splitlines()[0][:200]
    return json.dumps(body)[:200]


def _probabilities(preds: list, url: str) -> np.ndarray:
    first = preds[0] if preds else 0.0
    try:
        if isinstance(first, (int, float)) and not isinstance(first, bool):
            return np.asarray(preds, dtype=np.float64)
        if isinstance(first, list):
            return np.asarray([p[-1] if len(p) in (1, 2) else _bad(p) for p in preds], dtype=np.float64)
        if isinstance(first, dict):
            key = next((k for k in PROBABILITY_KEYS if k in first), None)
            if key is None and len(first) == 1:
                key = next(iter(first))
            if key is None:
                _bad(first)
            return np.asarray([p[key] for p in preds], dtype=np.float64)
    except (TypeError, ValueError, KeyError):
        pass
    raise ModelError(f"predictions must be numbers, [p0, p1] lists or {{class: p}} dicts; got {json.dumps(first)[:80]}",
                     file=url, field="model.url")


def _bad(value):
    raise ValueError(value)
