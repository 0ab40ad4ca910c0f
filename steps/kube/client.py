"""The Kubernetes API as plain dicts, with the client imported lazily (a step's cold start stays small).

Why dicts: steps snapshot, diff and restore objects byte for byte, and the ledger stores them as
JSON; the generated models would drop unknown fields and cost import time. Every call maps API
failures to the step exit codes: unreachable / 5xx / forbidden → InfrastructureError (exit 3).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from steps.errors import InfrastructureError

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
# An RFC 6902 patch: a list of operations. Named because inside `Kube` the method `list` shadows the builtin.
JsonPatch = list[dict]


def go_json(value: Any) -> bytes:
    """JSON as Go's encoder writes it. The API server's JSON-patch `test` compares leaf values by their
    raw bytes, and the stored object was encoded by Go: UTF-8 as is, and `&`, `<`, `>`, U+2028/9
    escaped. Python's default output (`&` literal, non-ASCII escaped) would fail every `test` on
    such a string. These characters occur only inside strings, so replacing them in the text is safe."""
    text = json.dumps(value, ensure_ascii=False)
    for raw, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text.encode("utf-8")


class NotFound(Exception):
    pass


class Conflict(Exception):
    """409: re-read and try again."""


class Unprocessable(InfrastructureError):
    """400/422: the API server refused the body. On a patch: a failed JSON-patch `test` (the API
    server says only "rejected") or a real validation error, which `Kube.guarded_patch` tells apart by
    re-reading the resourceVersion; on a create: schema validation (a CRD's included)."""


def backoff(attempt: int) -> None:
    """Jittered exponential pause between optimistic-concurrency retries (so two writers that keep
    colliding drift apart); capped at 1 s."""
    import random
    import time

    time.sleep(random.uniform(0, min(1.0, 0.02 * 2**attempt)))


@dataclass(frozen=True)
class Ref:
    api_version: str  # "v1", "apps/v1", "nvidia.com/v1beta1"
    plural: str
    namespace: str | None
    name: str

    @property
    def group_version(self) -> tuple[str, str]:
        group, _, version = self.api_version.rpartition("/")
        return group, version

    def path(self) -> str:
        group, version = self.group_version
        base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
        ns = f"/namespaces/{self.namespace}" if self.namespace else ""
        return f"{base}{ns}/{self.plural}/{self.name}" if self.name else f"{base}{ns}/{self.plural}"

    def to_dict(self) -> dict:
        return {"apiVersion": self.api_version, "plural": self.plural, "namespace": self.namespace, "name": self.name}

    @classmethod
    def from_dict(cls, data: dict) -> Ref:
        return cls(data["apiVersion"], data["plural"], data.get("namespace"), data["name"])

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.plural}.{self.api_version} {where}{self.name}"


class Kube:
    """A connected API client. One per process; passed explicitly (no module-level state)."""

    def __init__(self, api_client: Any):
        self.api_client = api_client

    # --- raw REST (the generated typed APIs are avoided on purpose, see module docstring) ----------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict | None = None,
        content_type: str | None = None,
        timeout: float | None = 30,
    ) -> dict:
        headers = {"Accept": "application/json"}
        payload = None
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
            payload = go_json(body) if content_type == JSON_PATCH else json.dumps(body)
        url = self.api_client.configuration.host + path
        if query:
            from urllib.parse import urlencode

            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        try:
            response = self.api_client.rest_client.pool_manager.request(
                method, url, headers=self._auth(headers), body=payload, timeout=timeout, retries=False
            )
        except InfrastructureError:
            raise  # a step's SIGTERM (options.Terminated) must reach its revert handler as itself
        except Exception as error:  # urllib3 connection errors and timeouts
            raise InfrastructureError(f"{method} {path}: {type(error).__name__}: {error}") from None
        text = response.data.decode() if response.data else ""
        if response.status >= 400:
            raise self._translate_status(response.status, text, method, path)
        return json.loads(text) if text else {}

    def request_text(self, method: str, path: str, timeout: float | None = 30) -> str:
        """A non-JSON GET (pod logs)."""
        url = self.api_client.configuration.host + path
        try:
            response = self.api_client.rest_client.pool_manager.request(method, url, headers=self._auth({}), timeout=timeout, retries=False)
        except InfrastructureError:
            raise
        except Exception as error:
            raise InfrastructureError(f"{method} {path}: {type(error).__name__}: {error}") from None
        text = response.data.decode(errors="replace") if response.data else ""
        if response.status >= 400:
            raise self._translate_status(response.status, text, method, path)
        return text

    def stream_lines(self, path: str, connect_timeout: float = 30) -> Iterator[str]:
        """A streaming GET (pod logs with follow=true): yields once when the server has answered (the
        empty string: the stream is open), then each line as it arrives, until the server ends it.
        NotFound / InfrastructureError for an error answer, before anything is yielded."""
        from urllib3 import Timeout
        from urllib3.exceptions import HTTPError

        url = self.api_client.configuration.host + path
        try:
            response = self.api_client.rest_client.pool_manager.request(
                "GET",
                url,
                headers=self._auth({}),
                preload_content=False,
                timeout=Timeout(connect=connect_timeout, read=None),
                retries=False,
            )
        except InfrastructureError:
            raise
        except Exception as error:
            raise InfrastructureError(f"GET {path}: {type(error).__name__}: {error}") from None
        try:
            if response.status >= 400:
                raise self._translate_status(response.status, response.read().decode(errors="replace"), "GET", path)
            yield ""
            buffer = b""
            try:
                for chunk in response.stream(4096, decode_content=True):
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        yield line.decode(errors="replace")
            except (OSError, HTTPError):
                pass  # a connection cut mid-stream ends the stream, as the server closing it does
            if buffer:
                yield buffer.decode(errors="replace")
        finally:
            response.close()  # never back to the pool: the server may still be streaming
            response.release_conn()

    def _auth(self, headers: dict) -> dict:
        cfg = self.api_client.configuration
        # The kubernetes client (v37) files kubeconfig and in-cluster tokens under "BearerToken" (value
        # already "Bearer …"); looking up only "authorization" sent service-account pods' requests
        # unauthenticated. The call also runs the client's token-refresh hook.
        token = cfg.get_api_key_with_prefix("BearerToken", alias="authorization") if hasattr(cfg, "get_api_key_with_prefix") else None
        if token:
            headers["Authorization"] = token
        headers.update(self.api_client.default_headers or {})
        return headers

    @staticmethod
    def _translate_status(status: int, text: str, method: str, path: str) -> Exception:
        try:
            message = json.loads(text).get("message", text)
        except (ValueError, AttributeError):
            message = text
        if status == 404:
            return NotFound(f"{path}: {message}")
        if status == 409:
            return Conflict(f"{path}: {message}")
        if status in (400, 422) and method in ("PATCH", "POST", "PUT"):
            return Unprocessable(f"{method} {path}: HTTP 422: {message}")
        return InfrastructureError(f"{method} {path}: HTTP {status}: {message}")

    # --- object verbs -------------------------------------------------------------------------------

    def get(self, ref: Ref) -> dict:
        return self.request("GET", ref.path())

    def get_or_none(self, ref: Ref) -> dict | None:
        try:
            return self.get(ref)
        except NotFound:
            return None

    def list(self, ref: Ref, label_selector: str | None = None, field_selector: str | None = None) -> dict:
        return self.request("GET", ref.path(), query={"labelSelector": label_selector, "fieldSelector": field_selector})

    def create(self, ref: Ref, body: dict) -> dict:
        return self.request("POST", Ref(ref.api_version, ref.plural, ref.namespace, "").path(), body=body)

    def replace(self, ref: Ref, body: dict) -> dict:
        return self.request("PUT", ref.path(), body=body)

    def delete(self, ref: Ref) -> None:
        try:
            self.request("DELETE", ref.path())
        except NotFound:
            pass

    def json_patch(self, ref: Ref, ops: JsonPatch) -> dict:
        return self.request("PATCH", ref.path(), body=ops, content_type=JSON_PATCH)

    def guarded_patch(self, ref: Ref, ops: JsonPatch) -> dict:
        """A JSON patch whose first op tests /metadata/resourceVersion: Conflict when the object
        changed meanwhile (re-read and recompute), the API server's error otherwise."""
        try:
            return self.json_patch(ref, ops)
        except Unprocessable:
            guard = ops[0] if ops and ops[0].get("path") == "/metadata/resourceVersion" else None
            if guard is not None and self.get(ref)["metadata"].get("resourceVersion") != guard["value"]:
                raise Conflict(f"{ref} changed meanwhile") from None
            raise

    def merge_patch(self, ref: Ref, patch: dict) -> dict:
        return self.request("PATCH", ref.path(), body=patch, content_type=MERGE_PATCH)

    def watch(
        self,
        ref: Ref,
        resource_version: str,
        field_selector: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int = 60,
    ) -> Iterator[dict]:
        """One watch connection (server-side timeout); yields decoded events until the server closes it.

        Callers loop: re-watch from the last resourceVersion, re-list on a 410 ERROR event.
        """
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
            "fieldSelector": field_selector,
            "labelSelector": label_selector,
        }
        from urllib.parse import urlencode

        base = Ref(ref.api_version, ref.plural, ref.namespace, "").path()
        url = self.api_client.configuration.host + base + "?" + urlencode({k: v for k, v in query.items() if v is not None})
        try:
            response = self.api_client.rest_client.pool_manager.request(
                "GET",
                url,
                headers=self._auth({"Accept": "application/json"}),
                preload_content=False,
                timeout=timeout_seconds + 15,
            )
        except InfrastructureError:
            raise
        except Exception as error:
            raise InfrastructureError(f"watch {base}: {type(error).__name__}: {error}") from None
        finished = False
        try:
            if response.status == 410:
                # A resourceVersion older than etcd's compaction can be refused up front instead of
                # as an in-stream ERROR event: callers handle both the same way (re-list).
                finished = True
                yield {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": response.read().decode()}}
                return
            if response.status >= 400:
                raise self._translate_status(response.status, response.read().decode(), "GET", base)
            buffer = b""
            for chunk in response.stream(4096, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
            finished = True
        except Exception as error:
            if isinstance(error, (NotFound, Conflict, InfrastructureError)):
                raise
            # The server closing a long-lived connection mid-read is a reconnect, not a failure.
            return
        finally:
            if not finished:
                # A caller that stopped early (condition met, SIGTERM) leaves the server still
                # streaming: that connection must never go back to the pool for another request.
                response.close()
            response.release_conn()


def connect(kubeconfig: str | None = None, context: str | None = None) -> Kube:
    """In-cluster service account when running as a pod; otherwise the kubeconfig (KUBECONFIG or given)."""
    try:
        from kubernetes import client, config
    except ImportError as error:  # pragma: no cover - the step image always has it
        raise InfrastructureError(f"kubernetes client missing: {error}") from None
    try:
        if kubeconfig or os.environ.get("KUBECONFIG") or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = client.Configuration()
            config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
        else:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
    except Exception as error:
        raise InfrastructureError(f"cannot load cluster credentials: {error}") from None
    return Kube(client.ApiClient(configuration))


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Turns unexpected NotFound/Conflict leaking out of a block into one-line infrastructure errors."""
    try:
        yield
    except (NotFound, Conflict) as error:
        raise InfrastructureError(f"{what}: {error}") from None
