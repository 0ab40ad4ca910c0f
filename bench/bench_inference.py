"""Inference load and report benchmarks (loopback only, bounded in count and time).

load_max_rps: successful requests per second one `faultflow step load` process sustains against the
  frontend simulator running in its own process (target >= 500).
report_100k_s: wall seconds of `faultflow step report` over a 100k-request run, plot included (target < 5).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAULTFLOW = str(Path(sys.executable).parent / "faultflow")
LOAD_SECONDS = 5.0


def start_simulator() -> tuple[subprocess.Popen, str]:
    sim = subprocess.Popen([sys.executable, "-m", "lab.inference_simulator", "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = sim.stdout.readline()  # "port: N" once it listens
    if not line.startswith("port: "):
        sim.kill()
        raise SystemExit(f"simulator did not start: {line!r}")
    return sim, f"http://127.0.0.1:{line.split()[1]}"


def load_max_rps(work: Path) -> float:
    sim, url = start_simulator()
    try:
        subprocess.run(
            [
                FAULTFLOW,
                "step",
                "load",
                "--url",
                url,
                "--model",
                "m",
                "--rate",
                "5000",
                "--concurrency",
                "4",
                "--duration",
                str(LOAD_SECONDS),
                "--outputs",
                str(work / "load"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=LOAD_SECONDS + 60,
        )
    finally:
        sim.terminate()
        sim.wait(10)
    starts, ends, ok = [], [], 0
    with (work / "load" / "records.jsonl").open() as lines:
        for line in lines:
            r = json.loads(line)
            if r["outcome"] == "ok":
                ok += 1
                starts.append(r["start"])
                ends.append(r["end"])
    return ok / (max(ends) - min(starts))


def report_100k_s(work: Path) -> float:
    rng = random.Random(7)
    t0, n, rate = 1_700_000_000.0, 100_000, 100.0
    folder = work / "run"
    folder.mkdir()
    with (folder / "records.jsonl").open("w") as out:
        for i in range(n):
            start = t0 + i / rate
            failed = 300 <= start - t0 < 420 and rng.random() < 0.7
            latency = 10.0 if failed else rng.lognormvariate(-1.5, 0.4)
            out.write(
                json.dumps(
                    {
                        "seq": i + 1,
                        "start": start,
                        "end": start + latency,
                        "latency": latency,
                        "outcome": "timeout" if failed else "ok",
                        "source": "bench",
                    }
                )
                + "\n"
            )
    marks = [
        (300, "inject-xid", "fault_injected"),
        (330, "wait-for-cordon", "xid_detected"),
        (340, "wait-for-cordon", "node_cordoned"),
        (380, "wait-for-cordon", "pods_evicted"),
        # Our restore comes after inference recovered (issue 15 item 14: recovery is measured before it).
        (440, "cleanup-dgd", "dgd_restored"),
        (441, "cleanup-dgd", "fault_cleared"),
    ]
    (folder / "events.jsonl").write_text("".join(json.dumps({"time": t0 + t, "step": s, "event": e}) + "\n" for t, s, e in marks))
    started = time.perf_counter()
    subprocess.run(
        [FAULTFLOW, "step", "report", "--input", str(folder), "--outputs", str(work / "report")],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=120,
    )
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"load_max_rps: {load_max_rps(work):.0f}")
        print(f"report_100k_s: {report_100k_s(work):.2f}")


if __name__ == "__main__":
    main()
