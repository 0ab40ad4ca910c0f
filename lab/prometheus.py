"""The lab's Prometheus: a real Prometheus server (Debian's package, pinned) scraping the lab's
simulators, so what reads NVSentinel's metrics through Prometheus' HTTP API (the report's MTTR
figures, and later PromQL probes) is tested against the real query engine.

    python -m lab.prometheus            fetch and unpack it into the cache (`make prometheus`)

The package is fetched with `apt-get download` and unpacked with `dpkg-deb -x` into
`<cache>/prometheus-<version>/`, never installed: its maintainer scripts would start a system service
on this machine. One fetch per version for every clone (a cache lock, as the control plane's builds).

`LabPrometheus.start(directory, targets)` runs it with its own configuration and TSDB under
`directory`, on 127.0.0.1 and a free port, scraping each target every second, and returns once every
target has been scraped (`up == 1`); `stop()` stops the process it started (SIGTERM, then SIGKILL).
`stop_recorded(directory)` stops the one a crashed owner left behind, by the pid and start time it
recorded, and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from lab.cache import cache_root, exclusive
from lab.processes import NotReady, Process, free_port, start, wait_until

PACKAGE = "prometheus"
VERSION = "2.42.0+ds-5+deb12u1"  # Debian bookworm's
BINARY = Path("usr/bin/prometheus")
SCRAPE_INTERVAL = "1s"
READY_TIMEOUT_S = 60.0


class PrometheusUnavailable(RuntimeError):
    """One line: why the lab's Prometheus cannot be had here."""


def install_dir() -> Path:
    return cache_root() / f"{PACKAGE}-{VERSION}"


def binary() -> Path:
    return install_dir() / BINARY


def _run(argv: list[str], cwd: Path) -> None:
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    except OSError as error:
        raise PrometheusUnavailable(f"faultflow: cannot run {argv[0]} to fetch Prometheus: {error.strerror}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["?"]
        raise PrometheusUnavailable(f"faultflow: `{' '.join(argv[:2])}` failed for Prometheus {VERSION}: {last[0]}")


def ensure_prometheus() -> Path:
    """The Prometheus binary, fetched and unpacked once per version (concurrent callers wait for one)."""
    if binary().is_file():
        return binary()
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise PrometheusUnavailable(f"faultflow: the lab's Prometheus comes from Debian's package {PACKAGE}={VERSION}; no {tool} here")
    with exclusive(PACKAGE):
        if binary().is_file():
            return binary()
        target = install_dir()
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{PACKAGE}-") as tmp:
            work = Path(tmp)
            _run(["apt-get", "download", "-q", f"{PACKAGE}={VERSION}"], work)
            debs = sorted(work.glob(f"{PACKAGE}_*.deb"))
            if not debs:
                raise PrometheusUnavailable(f"faultflow: apt-get download {PACKAGE}={VERSION} left no .deb")
            root = work / "root"
            _run(["dpkg-deb", "-x", str(debs[0]), str(root)], work)
            if not (root / BINARY).is_file():
                raise PrometheusUnavailable(f"faultflow: {debs[0].name} holds no {BINARY}")
            shutil.rmtree(target, ignore_errors=True)
            root.rename(target)  # readers see the whole tree or none
    return binary()


def config_yaml(targets: dict[str, str]) -> str:
    """prometheus.yml: one job per target (`host:port`), every second (the lab acts within seconds)."""
    import yaml

    return yaml.safe_dump(
        {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
            "scrape_configs": [
                {"job_name": job, "scrape_interval": SCRAPE_INTERVAL, "static_configs": [{"targets": [address]}]}
                for job, address in sorted(targets.items())
            ],
        },
        sort_keys=False,
    )


def _start_time(pid: int) -> str | None:
    """The process' start time in clock ticks since boot (with the pid, it names one process)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _get_json(url: str, timeout_s: float = 2.0) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            return json.loads(reply.read())
    except (OSError, ValueError):
        return None


@dataclass
class LabPrometheus:
    directory: Path
    url: str = ""
    process: Process | None = None
    targets: dict[str, str] = field(default_factory=dict)

    @property
    def pid_file(self) -> Path:
        return self.directory / "prometheus.pid"

    def start(self, targets: dict[str, str]) -> LabPrometheus:
        exe = ensure_prometheus()
        self.targets = dict(targets)
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "prometheus.yml"
        config.write_text(config_yaml(self.targets))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        argv = [
            str(exe),
            f"--config.file={config}",
            f"--storage.tsdb.path={self.directory / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1d",
            # Debian's console templates are not unpacked with it; the HTTP API needs none.
            f"--web.console.templates={self.directory}",
            f"--web.console.libraries={self.directory}",
        ]
        self.process = start("prometheus", argv, self.directory / "prometheus.log")
        pid = self.process.popen.pid
        self.pid_file.write_text(json.dumps({"pid": pid, "start_time": _start_time(pid)}))
        try:
            wait_until(
                self._all_up, what="Prometheus scraping every target", timeout_s=READY_TIMEOUT_S, process=self.process, interval_s=0.2
            )
        except NotReady:
            self.stop()
            raise
        return self

    def _all_up(self) -> bool | None:
        """Every target scraped at least once and up (before that a query would find no series)."""
        reply = _get_json(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": "up"}))
        if not reply or reply.get("status") != "success":
            return None
        up = {r["metric"].get("job"): r["value"][1] for r in reply["data"]["result"]}
        return True if all(up.get(job) == "1" for job in self.targets) else None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        self.pid_file.unlink(missing_ok=True)


def stop_recorded(directory: Path, grace_s: float = 10.0) -> bool:
    """Stop the Prometheus a `LabPrometheus` in `directory` recorded, if that very process still runs."""
    try:
        record = json.loads((directory / "prometheus.pid").read_text())
        pid = int(record["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if record.get("start_time") is None or _start_time(pid) != record["start_time"]:
        return False  # gone, or the pid now names another process
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _start_time(pid) == record["start_time"] and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the process table with a deadline
    if _start_time(pid) == record["start_time"]:
        os.kill(pid, signal.SIGKILL)
    (directory / "prometheus.pid").unlink(missing_ok=True)
    return True


def main() -> int:
    try:
        path = ensure_prometheus()
    except PrometheusUnavailable as error:
        print(error, file=sys.stderr)
        return 2
    print(f"prometheus {VERSION}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
