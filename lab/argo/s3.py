"""A minimal S3 client (path-style requests signed with AWS Signature Version 4), standard library only.

What the lab needs of its artifact repository from the host: make a bucket as a user would
(`aws s3 mb`), list keys and read objects to check what Argo's executor stored. Signing follows
AWS's published SigV4 algorithm; the server checks every signature, so a mistake here fails loudly.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass

REGION = "us-east-1"
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class S3Error(RuntimeError):
    def __init__(self, status: int, body: str, method: str, path: str):
        super().__init__(f"S3 {method} {path}: HTTP {status}: {body[:300]}")
        self.status = status


@dataclass(frozen=True)
class S3:
    endpoint: str  # http://host:port
    access_key: str
    secret_key: str
    region: str = REGION

    def request(self, method: str, path: str, query: dict[str, str] | None = None, body: bytes = b"") -> bytes:
        query = query or {}
        host = urllib.parse.urlsplit(self.endpoint).netloc
        uri = urllib.parse.quote(path, safe="/-_.~")
        canonical_query = "&".join(f"{_q(k)}={_q(v)}" for k, v in sorted(query.items()))
        now = datetime.datetime.now(datetime.UTC)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = hashlib.sha256(body).hexdigest()
        headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
        signed = ";".join(sorted(headers))
        canonical = "\n".join([method, uri, canonical_query, *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed, payload])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = f"AWS4{self.secret_key}".encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
        url = f"{self.endpoint}{uri}" + (f"?{canonical_query}" if canonical_query else "")
        req = urllib.request.Request(url, data=body if method in ("PUT", "POST") else None, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as reply:
                return reply.read()
        except urllib.error.HTTPError as err:
            raise S3Error(err.code, err.read().decode(errors="replace"), method, path) from None

    def create_bucket(self, bucket: str) -> None:
        """Make the bucket; one that already exists and is ours is fine (as `aws s3 mb` reruns)."""
        try:
            self.request("PUT", f"/{bucket}")
        except S3Error as err:
            if "BucketAlreadyOwnedByYou" not in str(err):
                raise

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        keys: list[str] = []
        token = ""
        while True:
            query = {"list-type": "2", "prefix": prefix, **({"continuation-token": token} if token else {})}
            root = ET.fromstring(self.request("GET", f"/{bucket}", query))
            keys += [el.text or "" for el in root.iter(f"{_S3_NS}Key")]
            token = root.findtext(f"{_S3_NS}NextContinuationToken") or ""
            if root.findtext(f"{_S3_NS}IsTruncated") != "true" or not token:
                return keys

    def get_object(self, bucket: str, key: str) -> bytes:
        return self.request("GET", f"/{bucket}/{key}")

    def put_object(self, bucket: str, key: str, body: bytes) -> None:
        self.request("PUT", f"/{bucket}/{key}", body=body)


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="-_.~")
