"""One etcd member on loopback, optionally started from a seeded data directory."""

from __future__ import annotations

import base64
import json
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lab import processes, tools

START_TIMEOUT_S = 60


def etcd_argv(data_dir: Path, client: int, peer: int, host: str = "127.0.0.1") -> list[str]:
    url = f"http://{host}:{client}"
    return [
        str(tools.ensure_built(tools.ETCD)),
        "--name=lab",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={url}",
        f"--advertise-client-urls={url}",
        f"--listen-peer-urls=http://{host}:{peer}",
        f"--initial-advertise-peer-urls=http://{host}:{peer}",
        f"--initial-cluster=lab=http://{host}:{peer}",
        # Throw-away data: durability buys nothing and fsync costs start-up time.
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


@dataclass
class Etcd:
    url: str
    data_dir: Path
    process: processes.Process

    @classmethod
    def start(cls, folder: Path, *, seed: Path | None = None) -> Etcd:
        """Start etcd with its data in `folder`; a `seed` data directory is copied in first."""
        folder.mkdir(parents=True, exist_ok=True)
        data_dir = folder / "data"
        if seed is not None:
            shutil.copytree(seed, data_dir)
        client, peer = processes.free_port(), processes.free_port()
        url = f"http://127.0.0.1:{client}"
        proc = processes.start("etcd", etcd_argv(data_dir, client, peer), folder / "etcd.log")
        etcd = cls(url=url, data_dir=data_dir, process=proc)
        processes.wait_until(etcd._healthy, what="etcd health", timeout_s=START_TIMEOUT_S, process=proc)
        return etcd

    def _healthy(self) -> bool | None:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                return True if json.loads(resp.read()).get("health") == "true" else None
        except OSError:
            return None

    def _gateway(self, path: str, body: dict) -> dict:
        # etcd's JSON gateway to its gRPC KV API: no etcd client library needed.
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())

    def revision(self) -> int:
        """The store's current revision (what kube-apiserver reports as resourceVersion)."""
        key = base64.b64encode(b"/").decode()
        return int(self._gateway("/v3/kv/range", {"key": key, "count_only": True})["header"]["revision"])

    def compact(self, revision: int | None = None) -> int:
        """Discard history before `revision` (default: now), as etcd's periodic compaction does.

        A watch resumed from an older resourceVersion then gets 410 Gone, deterministically.
        """
        target = self.revision() if revision is None else revision
        self._gateway("/v3/kv/compaction", {"revision": str(target), "physical": True})
        return target

    def stop(self) -> None:
        self.process.stop()
