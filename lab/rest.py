"""A minimal HTTPS client for the lab's own plumbing (readiness, CRD install, namespaces).

The lab's set-up path stays on the standard library: it is faster to start than the generated
Kubernetes client and does not depend on that client's model classes.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass


class ApiError(RuntimeError):
    def __init__(self, status: int, body: str, method: str, path: str):
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Rest:
    server: str
    context: ssl.SSLContext
    bearer_token: str | None = None

    @classmethod
    def with_client_cert(cls, server: str, ca: str, cert: str, key: str) -> Rest:
        context = ssl.create_default_context(cafile=ca)
        context.load_cert_chain(cert, key)
        return cls(server, context)

    def _request(self, method: str, path: str, body: object = None, content_type: str = "application/json"):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.server + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", content_type)
        if self.bearer_token:
            request.add_header("Authorization", f"Bearer {self.bearer_token}")
        return request

    def call(self, method: str, path: str, body: object = None, *, timeout_s: float = 30) -> dict:
        try:
            with urllib.request.urlopen(self._request(method, path, body), context=self.context, timeout=timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            raise ApiError(err.code, err.read().decode(errors="replace"), method, path) from None
        return json.loads(raw) if raw else {}

    def get(self, path: str) -> dict:
        return self.call("GET", path)

    def get_or_none(self, path: str) -> dict | None:
        """The object, or None when the API server answers 404."""
        try:
            return self.get(path)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def post(self, path: str, body: object) -> dict:
        return self.call("POST", path, body)

    def put(self, path: str, body: object) -> dict:
        return self.call("PUT", path, body)

    def delete(self, path: str) -> dict:
        return self.call("DELETE", path)

    def status(self, path: str, *, timeout_s: float = 2) -> int | None:
        """HTTP status of a GET, or None while nothing answers."""
        try:
            with urllib.request.urlopen(self._request("GET", path), context=self.context, timeout=timeout_s) as resp:
                return resp.status
        except urllib.error.HTTPError as err:
            return err.code
        except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError):
            return None

    def watch(self, path: str, resource_version: str, timeout_s: int) -> Iterator[dict]:
        """Events of a watch on a collection `path`, ending when the server closes it after `timeout_s`."""
        sep = "&" if "?" in path else "?"
        full = f"{path}{sep}watch=1&resourceVersion={resource_version}&timeoutSeconds={timeout_s}"
        with urllib.request.urlopen(self._request("GET", full), context=self.context, timeout=timeout_s + 10) as resp:
            for line in resp:
                if line.strip():
                    yield json.loads(line)
