"""Issue 15, Low: what nobody foresaw still ends as one line on stderr and exit 3 (the catch-all in
`steps.cli.run`), never a traceback and exit 1 (which means "a check failed"). One case each: an API
server answering something that is not JSON, a list whose items have no `metadata`, a toggle expiry
of 1e300 s, NaN in the report's input, and a `render --out` that cannot be written."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.cli import faultflow


class Answer(BaseHTTPRequestHandler):
    body = b""
    content_type = "application/json"

    def do_GET(self):  # noqa: N802 - the http.server hook's name
        self.send_response(200)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def api_server(tmp_path):
    """A stand-in API server on loopback that answers every GET with the body the test sets."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (Answer,), {}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    yield server.RequestHandlerClass, str(kubeconfig)
    server.shutdown()
    server.server_close()


def _one_line_exit_3(done) -> bool:
    lines = done.stderr.strip().splitlines()
    return done.returncode == 3 and len(lines) == 1 and lines[0].startswith("faultflow: error:") and "Traceback" not in done.stderr


def test_low_item_an_api_answer_that_is_not_json(api_server):
    handler, kubeconfig = api_server
    handler.body, handler.content_type = b"<html>proxy login</html>", "text/html"
    done = faultflow("faults", "list", "--kubeconfig", kubeconfig)
    assert _one_line_exit_3(done), (done.returncode, done.stderr)


def test_low_item_a_list_whose_items_have_no_metadata(api_server):
    handler, kubeconfig = api_server
    handler.body = json.dumps({"kind": "ConfigMapList", "apiVersion": "v1", "items": [{"data": {"run": "{}"}}, {}]}).encode()
    done = faultflow("faults", "list", "--kubeconfig", kubeconfig)
    # Unreadable ledgers are skipped, not fatal; what matters is no traceback and no exit 1.
    assert done.returncode in (0, 3) and "Traceback" not in done.stderr, (done.returncode, done.stderr)
    assert done.returncode == 0 or _one_line_exit_3(done)


def test_low_item_a_toggle_expiry_of_1e300_seconds(tmp_path):
    toggle = tmp_path / "toggle"
    done = faultflow("shim", "on", "--file", str(toggle), "--xid", "79", "--expires-in", "1e300")
    lines = done.stderr.strip().splitlines()
    # Refused as bad input (2) once durations are bounded, or an unexpected error (3): one line either way.
    assert done.returncode in (2, 3) and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr


def test_low_item_nan_in_the_report_input(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "events.jsonl").write_text('{"time": 5, "step": "inject-xid", "event": "fault_injected", "xid": NaN}\n')
    (folder / "records.jsonl").write_text('{"seq": 1, "start": 1, "end": 2, "latency": 1, "outcome": "ok"}\n')
    done = faultflow("step", "report", "--input", str(folder), "--outputs-dir", str(tmp_path / "out"))
    assert done.returncode in (1, 3) and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_low_item_render_out_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    done = faultflow("render", "--out", str(blocker / "deploy"))
    assert done.returncode in (2, 3) and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
