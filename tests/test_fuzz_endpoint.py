"""Hostile scoring endpoints (found by fuzzing): a real HTTP server on 127.0.0.1 that trickles its answer a byte at
a time (httpx's timeout bounds each read, so the run waited forever), answers JSON nested 200,000 deep (a
RecursionError: exit 3), or a KServe tensor whose shape is not a list (a TypeError: exit 3); and scenario values
that overflowed ``time.sleep`` and the socket timeout (``timeout: 1e308``, ``max_rps: 1e-300``). Each is one line
naming the URL and the field, in bounded time."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from simulator.cli import app
from simulator.errors import ModelError
from simulator.target import load_model
from tests._util import one_line_error

NAMES = ["Betrag €", "select", "hour of day"]


class _Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        n = len(body["dataframe_split"]["data"]) if "dataframe_split" in body else body["inputs"][0]["shape"][0]
        mode = self.server.mode
        if mode == "trickle":  # a valid answer, one byte every 50 ms: each read is quick, the whole never ends
            self.send_response(200)
            self.send_header("Content-Length", "10000000")
            self.end_headers()
            try:
                while not self.server.stopping:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                pass
            return
        if mode == "deep":
            data = b"[" * 200_000 + b"]" * 200_000
        elif mode == "shape":
            data = json.dumps({"outputs": [{"name": "p", "data": [0.5] * (2 * n), "shape": 7}]}).encode()
        else:
            data = json.dumps({"predictions": [0.25] * n}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def hostile():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    httpd.daemon_threads = True
    httpd.stopping = False
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.stopping = True
    httpd.shutdown()
    httpd.server_close()


def url_of(httpd, protocol="mlflow"):
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    return base + ("/invocations" if protocol == "mlflow" else "/v2/models/m/infer")


@pytest.mark.parametrize("mode, protocol, field, message", [
    ("trickle", "mlflow", "model.timeout", "no answer within 1 s"),
    ("deep", "mlflow", "model.url", "nested too deeply"),
    ("shape", "kserve_v2", "model.url", "the output tensor has 6 values for 3 rows"),
], ids=["trickled answer", "deeply nested JSON", "kserve shape not a list"])
def test_hostile_answers_are_one_line_in_bounded_time(hostile, mode, protocol, field, message):
    hostile.mode = mode
    url = url_of(hostile, protocol)
    m = load_model({"url": url, "protocol": protocol, "features": NAMES, "timeout": 1, "retries": 0})
    t0 = time.monotonic()
    with pytest.raises(ModelError) as exc:
        m.predict_score(np.ones((3, 3)))
    assert time.monotonic() - t0 < 10
    text = str(exc.value)
    assert text.startswith(f"{url}: {field}: ") and message in text and "\n" not in text, text
    m.close()


def test_a_healthy_answer_still_scores(hostile):
    hostile.mode = "ok"
    m = load_model({"url": url_of(hostile), "features": NAMES, "timeout": 5})
    assert m.predict_score(np.ones((4, 3))).tolist() == [0.25] * 4
    m.close()


@pytest.mark.parametrize("model, field", [
    ({"timeout": 1e308}, "model.timeout"),
    ({"max_rps": 1e-300}, "model.max_rps"),
], ids=["timeout 1e308", "max_rps 1e-300"])
def test_absurd_timeouts_and_rates_are_one_line(hostile, tmp_path, model, field):
    """Both were exit 3: OverflowError from the socket timeout and from time.sleep between requests."""
    hostile.mode = "ok"
    import polars as pl

    pl.DataFrame({"Betrag €": [1.0, 2.0, 3.0], "select": [0.0, 1.0, 0.0], "hour of day": [1.0, 2.0, 3.0],
                  "is_fraud": [1, 0, 1]}).write_parquet(tmp_path / "daten.parquet")
    raw = {"name": "absurd", "data": {"path": "daten.parquet", "label": "is_fraud"},
           "model": {"url": url_of(hostile), "features": NAMES, "threshold": 0.1, **model},
           "features": {"Betrag €": {"min": 0, "max": 10}},
           "attack": {"targets": "fraud", "limit": 1, "budget": 3, "strategies": ["random"]}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    out = tmp_path / "out.duckdb"
    one_line_error(CliRunner().invoke(app, ["run", str(tmp_path / "s.yaml"), "-q", "-o", str(out)]), field)
    assert not out.exists()
