"""A tiny scoring server for any model fraudsim loads, speaking MLflow's scoring protocol or KServe v2.

For trying ``model: {url: ...}`` scenarios locally, for the endpoint tests and for the HTTP benchmark::

    python -m simulator.serve models/xgb_baseline.json --protocol mlflow --port 5001
    python -m simulator.serve models/xgb_baseline.onnx --protocol kserve_v2 --port 8080 --model-name fraud \\
        --features amount,hour,...

Routes: ``POST /invocations`` (mlflow: ``dataframe_split`` in, ``predictions`` out) or
``POST /v2/models/NAME/infer`` (kserve_v2: one ``[n, d]`` tensor in, a ``probability`` tensor out); ``GET /ping``,
``/health``, ``/v2/health/ready`` and ``/v2/models/NAME`` answer 200. JSON ``null`` inputs score as missing (NaN).

``--fail-rate`` answers that share of scoring requests with 503 before scoring (a flaky service) and ``--delay``
waits that many seconds before scoring (a slow one). The server counts the rows it scored (``rows_scored``).
It uses the standard library's threading HTTP server: a test and demo tool, not a production server.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

PROTOCOLS = ("mlflow", "kserve_v2")
MLFLOW_FORMATS = ("number", "pair", "dict")


class ScoringServer:
    """Serve ``model`` (a :class:`~simulator.target.TargetModel`) on ``host:port`` (0: any free port) in a thread.

    Examples
    --------
    >>> import numpy as np, xgboost as xgb, httpx
    >>> from simulator.target import load_model
    >>> X = np.random.default_rng(0).random((100, 2)); b = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(X, X[:, 0] > .5), 2)
    >>> with ScoringServer(load_model(b, features=["a", "b"]), "mlflow") as srv:
    ...     r = httpx.post(srv.url, json={"dataframe_split": {"columns": ["a", "b"], "data": [[0.9, 0.1]]}})
    ...     len(r.json()["predictions"]), srv.rows_scored
    (1, 1)
    """

    def __init__(self, model: Any, protocol: str = "mlflow", *, host: str = "127.0.0.1", port: int = 0,
                 model_name: str = "fraud", fail_rate: float = 0.0, delay: float = 0.0, seed: int = 0,
                 mlflow_format: str = "number"):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}")
        if mlflow_format not in MLFLOW_FORMATS:
            raise ValueError(f"mlflow_format must be one of {MLFLOW_FORMATS}")
        self.model, self.protocol, self.model_name = model, protocol, model_name
        self.fail_rate, self.delay, self.mlflow_format = float(fail_rate), float(delay), mlflow_format
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()
        self.rows_scored = self.requests = self.failures = 0
        self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        self.httpd.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        if isinstance(host, (bytes, bytearray)):  # an AF_INET address is (str, int); the stubs also allow bytes
            host = host.decode()
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        """The scoring URL for ``model.url``."""
        if self.protocol == "mlflow":
            return f"{self.base_url}/invocations"
        return f"{self.base_url}/v2/models/{self.model_name}/infer"

    def start(self) -> "ScoringServer":
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="fraudsim-serve", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "ScoringServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- scoring ---------------------------------------------------------------------------------------------------
    def handle(self, path: str, body: bytes) -> tuple[int, dict]:
        with self.lock:
            self.requests += 1
            fail = self.fail_rate > 0 and self.rng.random() < self.fail_rate
            if fail:
                self.failures += 1
        if fail:
            return 503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "injected failure (--fail-rate)"}
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return 400, {"error_code": "BAD_REQUEST", "message": f"invalid JSON: {exc}"}
        try:
            X = self._features(path, payload)
        except _BadRequest as exc:
            return exc.status, {"error_code": "BAD_REQUEST", "message": str(exc)}
        if self.delay:
            time.sleep(self.delay)
        scores = self.model.predict_score(X)
        with self.lock:
            self.rows_scored += len(X)
        if self.protocol == "kserve_v2":
            return 200, {"model_name": self.model_name, "outputs": [
                {"name": "probability", "shape": [len(scores)], "datatype": "FP32", "data": scores.tolist()}]}
        if self.mlflow_format == "pair":
            return 200, {"predictions": np.column_stack([1 - scores, scores]).tolist()}
        if self.mlflow_format == "dict":
            return 200, {"predictions": [{"0": 1 - s, "1": s} for s in scores.tolist()]}
        return 200, {"predictions": scores.tolist()}

    def _features(self, path: str, payload: Any) -> np.ndarray:
        names = list(self.model.feature_names)
        if self.protocol == "mlflow":
            if path.rstrip("/") != "/invocations":
                raise _BadRequest(f"no route {path}; POST /invocations", 404)
            split = payload.get("dataframe_split") if isinstance(payload, dict) else None
            if not isinstance(split, dict) or "data" not in split:
                raise _BadRequest("expected {'dataframe_split': {'columns': [...], 'data': [[...]]}}")
            cols = split.get("columns") or names
            missing = [c for c in names if c not in cols]
            if missing:
                raise _BadRequest(f"missing column {missing[0]!r}; the model needs {names}")
            X = _matrix(split["data"], len(cols))
            return X[:, [cols.index(c) for c in names]]
        if path.rstrip("/") != f"/v2/models/{self.model_name}/infer":
            raise _BadRequest(f"no model at {path}; POST /v2/models/{self.model_name}/infer", 404)
        inputs = payload.get("inputs") if isinstance(payload, dict) else None
        if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
            raise _BadRequest("expected one input tensor: {'inputs': [{'name', 'shape', 'datatype', 'data'}]}")
        t = inputs[0]
        shape = t.get("shape")
        if not (isinstance(shape, list) and len(shape) == 2 and shape[1] == len(names)):
            raise _BadRequest(f"input shape must be [n, {len(names)}], got {shape}")
        return _matrix(t.get("data"), len(names)).reshape(int(shape[0]), len(names))


class _BadRequest(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _matrix(data: Any, d: int) -> np.ndarray:
    try:
        X = np.array(data, dtype=np.float64)  # JSON null becomes NaN
    except (TypeError, ValueError) as exc:
        raise _BadRequest(f"data must be numbers or null: {exc}") from None
    if X.ndim == 1 and d and len(X) % d == 0:
        X = X.reshape(-1, d)
    if X.ndim != 2 or X.shape[1] != d:
        raise _BadRequest(f"data must be rows of {d} values, got shape {list(X.shape)}")
    return X


def _handler(server: ScoringServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections

        def log_message(self, format, *args):  # quiet
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout): nothing to do
                self.close_connection = True

        def do_GET(self):
            if self.path in ("/ping", "/health", "/v2/health/ready", "/v2/health/live", "/"):
                self._send(200, {"status": "ok"})
            elif self.path.rstrip("/") == f"/v2/models/{server.model_name}":
                self._send(200, {"name": server.model_name, "platform": f"fraudsim-{server.model.kind}",
                                 "inputs": [{"name": "input-0", "datatype": "FP32",
                                             "shape": [-1, len(server.model.feature_names)]}],
                                 "outputs": [{"name": "probability", "datatype": "FP32", "shape": [-1]}]})
            else:
                self._send(404, {"message": f"no route {self.path}"})

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n)
            try:
                status, out = server.handle(self.path, body)
            except Exception as exc:  # a scoring failure is the server's fault: 500 with its message
                status, out = 500, {"error_code": "INTERNAL_ERROR", "message": str(exc)[:200]}
            self._send(status, out)

    return Handler


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulator.serve", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="model file: XGBoost JSON/UBJ, LightGBM text or ONNX")
    ap.add_argument("--protocol", choices=PROTOCOLS, default="mlflow")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5001)
    ap.add_argument("--model-name", default="fraud", help="kserve_v2: serves /v2/models/NAME/infer")
    ap.add_argument("--features", help="comma-separated input names, for a model file saved without names")
    ap.add_argument("--fail-rate", type=float, default=0.0, help="answer this share of requests with 503")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds to wait before scoring each request")
    ap.add_argument("--mlflow-format", choices=MLFLOW_FORMATS, default="number",
                    help="mlflow predictions as numbers, [p0, p1] pairs or {class: p} dicts")
    args = ap.parse_args(argv)
    from .errors import FraudsimError
    from .target import load_model

    try:
        model = load_model(args.model, features=args.features.split(",") if args.features else None)
    except FraudsimError as exc:
        print(f"fraudsim serve: {exc}")
        return 2
    srv = ScoringServer(model, args.protocol, host=args.host, port=args.port, model_name=args.model_name,
                        fail_rate=args.fail_rate, delay=args.delay, mlflow_format=args.mlflow_format)
    print(f"serving {model.describe()} ({args.protocol}) at {srv.url}  (Ctrl-C stops)", flush=True)
    try:
        srv.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.httpd.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
