"""KUBELET LOG SIMULATOR: the kubelet's container-log endpoint, served from log files on loopback.

No kubelet runs in the lab, yet `GET pods/{pod}/log` through the real kube-apiserver is how a step
reads a worker's output (inject-cuda-shim checks the shim's start-up marker there). The API server
answers it by proxying to the pod's node: `https://<node InternalIP>:<status.daemonEndpoints.
kubeletEndpoint.Port>/containerLogs/{namespace}/{pod}/{container}?limitBytes=&tailLines=…`, presenting
its kubelet client certificate and checking the kubelet's serving certificate against
`--kubelet-certificate-authority` (lab/controlplane.py passes both). This simulator copies that
contract and nothing else: TLS with the lab's kubelet serving certificate, client certificates
required and checked against the cluster CA, 404 for an unknown container, `limitBytes` and
`tailLines` applied as the kubelet does. `follow=true` streams as the kubelet does: what the file
holds, then whatever is appended, until the container stops (then the rest, then the end).

    with KubeletLogSimulator(log_dir, cluster.pki) as kubelet:
        node_status = kubelet.node_status()           # merge into the Node's status
        kubelet.register("ns", "pod", "main", path)   # that container's log is this file
        kubelet.stop("ns", "pod", "main")             # its container stopped: follow streams end
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from lab.pki import Pki

LOOPBACK = "127.0.0.1"
FOLLOW_POLL_S = 0.05  # how often a follow stream looks for appended output (the kubelet uses inotify)


class KubeletLogSimulator:
    """A loopback HTTPS server answering `/containerLogs/{namespace}/{pod}/{container}`."""

    def __init__(
        self,
        log_dir: Path,
        pki: Pki,
        resolve: Callable[[str, str, str], Path | None] | None = None,
        running: Callable[[str, str, str], bool] | None = None,
    ):
        """`resolve(namespace, pod, container)` finds logs that were not registered (the lab's
        kubelet simulator writes one file per pod as it starts them); `running(namespace, pod,
        container)` says whether that container still runs (default: registered and not `stop`ped)."""
        self.log_dir = Path(log_dir)
        self._resolve = resolve
        self._running = running
        self._stopped: set[tuple[str, str, str]] = set()
        self.closing = threading.Event()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._logs: dict[tuple[str, str, str], Path] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((LOOPBACK, 0), _handler(self))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.kubelet_serving_cert, pki.kubelet_serving_key)
        context.load_verify_locations(pki.ca_cert)
        context.verify_mode = ssl.CERT_REQUIRED  # the kubelet authenticates the API server, too
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="kubelet-log-simulator", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def node_status(self) -> dict:
        """The Node status fields the API server uses to reach this kubelet."""
        return {"addresses": [{"type": "InternalIP", "address": LOOPBACK}], "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}}}

    def register(self, namespace: str, pod: str, container: str, path: Path | None = None) -> Path:
        """Serves `path` (default: a file under log_dir, created empty) as that container's log."""
        target = Path(path) if path is not None else self.log_dir / f"{namespace}_{pod}_{container}.log"
        target.touch(exist_ok=True)
        with self._lock:
            self._logs[(namespace, pod, container)] = target
        return target

    def stop(self, namespace: str, pod: str, container: str) -> None:
        """That container stopped (its pod deleted, say): follow streams of its log end."""
        with self._lock:
            self._stopped.add((namespace, pod, container))

    def running(self, namespace: str, pod: str, container: str) -> bool:
        if self._running is not None:
            return self._running(namespace, pod, container)
        with self._lock:
            return (namespace, pod, container) in self._logs and (namespace, pod, container) not in self._stopped

    def log_file(self, namespace: str, pod: str, container: str) -> Path | None:
        with self._lock:
            found = self._logs.get((namespace, pod, container))
        if found is None and self._resolve is not None:
            found = self._resolve(namespace, pod, container)
        return found

    def __enter__(self) -> KubeletLogSimulator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closing.set()  # follow streams end
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def select(data: bytes, query: dict[str, list[str]]) -> bytes:
    """The kubelet's log options: `tailLines` (last N lines), then `limitBytes` (first N bytes of that)."""
    if "tailLines" in query:
        lines = data.splitlines(keepends=True)
        count = int(query["tailLines"][0])
        data = b"".join(lines[-count:]) if count > 0 else b""
    if "limitBytes" in query:
        data = data[: int(query["limitBytes"][0])]
    return data


def _handler(simulator: KubeletLogSimulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            url = urlsplit(self.path)
            parts = [unquote(p) for p in url.path.split("/") if p]
            if len(parts) != 4 or parts[0] != "containerLogs":
                self._reply(404, b"404 page not found\n")
                return
            path = simulator.log_file(parts[1], parts[2], parts[3])
            if path is None:
                self._reply(404, f"container {parts[3]} of pod {parts[1]}/{parts[2]} not found\n".encode())
                return
            query = parse_qs(url.query)
            try:
                body = select(path.read_bytes(), query)
            except ValueError:
                self._reply(400, b"invalid log options\n")
                return
            if query.get("follow") == ["true"]:
                self._follow(path, body, query, (parts[1], parts[2], parts[3]))
                return
            self._reply(200, body)

        def _follow(self, path: Path, first: bytes, query: dict[str, list[str]], container: tuple[str, str, str]) -> None:
            """The body is what the log holds, then what is appended, until the container stops;
            `limitBytes` caps the whole stream. Close-delimited (HTTP/1.0), as a stream of unknown length."""
            limit = int(query["limitBytes"][0]) if "limitBytes" in query else None
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            sent, offset = 0, path.stat().st_size if "tailLines" in query else 0
            if "tailLines" in query:
                self.wfile.write(first)
                sent = len(first)
            try:
                while True:
                    alive = simulator.running(*container)  # asked first: what it wrote before stopping is sent
                    with open(path, "rb") as log:
                        log.seek(offset)
                        chunk = log.read()
                    offset += len(chunk)
                    if limit is not None:
                        chunk = chunk[: max(0, limit - sent)]
                    if chunk:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        sent += len(chunk)
                    if not alive or (limit is not None and sent >= limit) or simulator.closing.wait(FOLLOW_POLL_S):
                        return
            except (OSError, ValueError):
                return  # the client went away, or the log file did

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass  # the API server's own log records the proxied requests

    return Handler
