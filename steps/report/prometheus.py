"""A small client of Prometheus' HTTP query API (`GET /api/v1/query`), for evidence read from the
platform's own metrics: the report's NVSentinel MTTR figures, and PromQL probes after it.

Only instant queries, evaluated at a given time. Every way a server can fail to give an answer (no
answer, an HTTP error, a non-JSON body, `status: error`, a result that is not a vector) is one
`PrometheusError` whose message says why in a few words; callers decide whether that matters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

QUERY_PATH = "/api/v1/query"


class PrometheusError(Exception):
    """Prometheus gave no usable answer; the message says why."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class PrometheusApi:
    url: str  # the server's base URL, e.g. http://prometheus.monitoring:9090
    timeout_s: float = 10.0

    def query(self, promql: str, at: float) -> list[Sample]:
        """The instant vector `promql` evaluates to at `at` (Unix seconds); a scalar is one sample without labels."""
        import httpx

        try:
            reply = httpx.get(f"{self.url}{QUERY_PATH}", params={"query": promql, "time": f"{at:.3f}"}, timeout=self.timeout_s)
        except httpx.TimeoutException:
            raise PrometheusError(f"{self.url} did not answer within {self.timeout_s:g}s") from None
        except httpx.HTTPError as error:
            raise PrometheusError(f"{self.url} did not answer ({_short(error)})") from None
        try:
            body = reply.json()
        except ValueError:
            raise PrometheusError(f"{self.url}{QUERY_PATH} answered HTTP {reply.status_code} without JSON: is it Prometheus?") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            text = body.get("error") if isinstance(body, dict) else None
            raise PrometheusError(f"query {promql!r} failed: HTTP {reply.status_code} {text or 'no error text'}")
        data = body.get("data") or {}
        if data.get("resultType") == "scalar":  # `vector(1) > bool 0`, `1 + 1`: one number, no labels
            data = {"resultType": "vector", "result": [{"metric": {}, "value": data.get("result")}]}
        if data.get("resultType") != "vector":
            raise PrometheusError(f"query {promql!r} gave a {data.get('resultType')!r}, not an instant vector")
        samples = []
        for item in data.get("result") or []:
            try:
                value = float(item["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                raise PrometheusError(f"query {promql!r}: a sample without a number") from None
            if math.isfinite(value):
                samples.append(Sample(dict(item.get("metric") or {}), value))
        return samples


def _short(error: Exception) -> str:
    text = str(error) or error.__class__.__name__
    return text.splitlines()[0][:120]


def label_matcher(**labels: str) -> str:
    """`{a="x",b="y"}` with the values escaped as PromQL string literals."""
    if not labels:
        return ""
    escaped = {k: v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for k, v in labels.items()}
    return "{" + ",".join(f'{k}="{v}"' for k, v in escaped.items()) + "}"
