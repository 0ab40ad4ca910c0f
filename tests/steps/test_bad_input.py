"""Bad input: exit 2, one line on stderr, nothing changed — asserted by a snapshot of everything a
step could touch (the DGD, the node, the ledgers, the toggle file, the kernel log)."""

from __future__ import annotations

import json

import pytest

from steps.gpu import toggle
from steps.kube.client import Ref
from tests.dgd_samples import dgd_v1alpha1, dgd_v1beta1, no_gpu_workers
from tests.steps.bad_input import bad_input_failures
from tests.steps.test_gpus import make_proc
from tests.support.cluster_world import HOME, dgd_ref, make_gpu_node, make_namespace

# (name, argv) — placeholders: {ns} opted-in namespace, {closed} namespace not opted in, {node},
# {node2}, {kmsg}, {proc}, {tdir}, {nogpu} a DGD without GPU workers, {linkdir} a toggle directory whose
# toggle is a symbolic link to {tdir}'s, {foreign} one whose toggle file is someone else's file.
PREFLIGHT = ["step", "preflight", "--run-id", "r1", "--target", "dgd/llm", "--expect-remediation=false"]
CASES = [
    ("xid unknown", ["step", "inject-xid", "--xid", "999", "--kmsg-path", "{kmsg}", "--proc-root", "{proc}"]),
    ("xid zero", ["step", "inject-xid", "--xid", "0", "--kmsg-path", "{kmsg}", "--proc-root", "{proc}"]),
    ("xid not a number", ["step", "inject-xid", "--xid", "x79", "--kmsg-path", "{kmsg}", "--proc-root", "{proc}"]),
    ("gpu out of range on node", ["step", "inject-xid", "--xid", "79", "--gpu", "5", "--kmsg-path", "{kmsg}", "--proc-root", "{proc}"]),
    ("no driver in proc root", ["step", "inject-xid", "--xid", "79", "--kmsg-path", "{kmsg}", "--proc-root", "{tdir}"]),
    (
        "kmsg is a directory",
        ["step", "inject-xid", "--xid", "79", "--kmsg-path", "{tdir}", "--proc-root", "{proc}", "--toggle-dir", "{tdir}"],
    ),
    (
        "kmsg missing",
        ["step", "inject-xid", "--xid", "79", "--kmsg-path", "{tdir}/nope/kmsg", "--proc-root", "{proc}", "--toggle-dir", "{tdir}"],
    ),
    (
        "toggle dir missing",
        ["step", "inject-xid", "--xid", "79", "--kmsg-path", "{kmsg}", "--proc-root", "{proc}", "--toggle-dir", "{tdir}/nope"],
    ),
    ("expires-in malformed", ["step", "inject-xid", "--xid", "79", "--kmsg-path", "{kmsg}", "--proc-root", "{proc}", "--expires-in", "5x"]),
    ("expires-in negative", ["step", "inject-xid", "--xid", "79", "--kmsg-path", "{kmsg}", "--proc-root", "{proc}", "--expires-in", "-1s"]),
    ("proc name with comma", ["step", "inject-xid", "--xid", "79", "--kmsg-path", "{kmsg}", "--proc-root", "{proc}", "--proc-name", "a,b"]),
    ("pid negative", ["step", "inject-xid", "--xid", "79", "--kmsg-path", "{kmsg}", "--proc-root", "{proc}", "--pid", "-3"]),
    # issue 15 item 10, the low items and issue 17's trigger options: the toggle cannot be wrapped,
    # made eternal, followed through a link or written over someone else's file
    *(
        (f"inject-xid {name}", ["step", "inject-xid", "--xid", "79", "--kmsg-path", "{kmsg}", "--proc-root", "{proc}", *args])
        for name, args in (
            ("expires-in past 24h", ["--toggle-dir", "{tdir}", "--expires-in", "25h"]),
            ("expires-in 1e300", ["--toggle-dir", "{tdir}", "--expires-in", "1e300"]),
            ("toggle-gpu past 63", ["--toggle-dir", "{tdir}", "--toggle-gpu", "4294967296"]),
            ("mode unknown", ["--toggle-dir", "{tdir}", "--mode", "stall"]),
            ("hang-ms without hang mode", ["--toggle-dir", "{tdir}", "--hang-ms", "5"]),
            ("probability zero", ["--toggle-dir", "{tdir}", "--probability", "0"]),
            ("probability nan", ["--toggle-dir", "{tdir}", "--probability", "nan"]),
            ("after-calls negative", ["--toggle-dir", "{tdir}", "--after-calls", "-1"]),
            ("toggle is a symbolic link", ["--toggle-dir", "{linkdir}"]),
            ("toggle is not a toggle record", ["--toggle-dir", "{foreign}"]),
        )
    ),
    ("shim on gpu past 63", ["shim", "on", "--file", "{tdir}/toggle", "--xid", "79", "--gpu", "4294967296"]),
    ("shim on expires-in 1e300", ["shim", "on", "--file", "{tdir}/toggle", "--xid", "79", "--expires-in", "1e300"]),
    ("shim on expires-in past 24h", ["shim", "on", "--file", "{tdir}/toggle", "--xid", "79", "--expires-in", "25h"]),
    ("shim on through a symbolic link", ["shim", "on", "--file", "{linkdir}/toggle", "--xid", "79"]),
    ("shim off through a symbolic link", ["shim", "off", "--file", "{linkdir}/toggle"]),
    ("shim off a foreign file", ["shim", "off", "--file", "{foreign}/toggle"]),
    ("shim on a foreign file", ["shim", "on", "--file", "{foreign}/toggle", "--xid", "79"]),
    ("shim status of a directory", ["shim", "status", "--file", "{tdir}"]),
    ("shim on bus and host gpu", ["shim", "on", "--file", "{tdir}/toggle", "--xid", "79", "--bus", "0000:17:00.0", "--host-gpu", "0"]),
    ("shim on host gpu not on node", ["shim", "on", "--file", "{tdir}/toggle", "--xid", "79", "--host-gpu", "5", "--proc-root", "{proc}"]),
    ("shim on mode unknown", ["shim", "on", "--file", "{tdir}/toggle", "--xid", "43", "--mode", "stall"]),
    ("namespace not opted in", PREFLIGHT + ["--namespace", "{closed}", "--node", "{node}", "--xid", "79"]),
    ("fault-duration past 24h", PREFLIGHT + ["--namespace", "{ns}", "--node", "{node}", "--xid", "79", "--fault-duration", "25h"]),
    ("namespace missing", PREFLIGHT + ["--namespace", "no-such-ns", "--node", "{node}", "--xid", "79"]),
    (
        "dgd missing",
        [
            "step",
            "preflight",
            "--run-id",
            "r1",
            "--target",
            "dgd/nope",
            "--expect-remediation=false",
            "--namespace",
            "{ns}",
            "--node",
            "{node}",
            "--xid",
            "79",
        ],
    ),
    (
        "dgd without gpu workers",
        [
            "step",
            "preflight",
            "--run-id",
            "r1",
            "--target",
            "dgd/nogpu",
            "--expect-remediation=false",
            "--namespace",
            "{ns}",
            "--node",
            "{node}",
            "--xid",
            "79",
        ],
    ),
    ("node missing", PREFLIGHT + ["--namespace", "{ns}", "--node", "no-such-node", "--xid", "79"]),
    ("over blast radius", PREFLIGHT + ["--namespace", "{ns}", "--node", "{node}", "--node", "{node2}", "--xid", "79"]),
    ("gpu index out of range", PREFLIGHT + ["--namespace", "{ns}", "--node", "{node}", "--xid", "79", "--gpu", "8"]),
    ("preflight unknown xid", PREFLIGHT + ["--namespace", "{ns}", "--node", "{node}", "--xid", "173"]),
    ("ttl malformed", PREFLIGHT + ["--namespace", "{ns}", "--node", "{node}", "--xid", "79", "--ttl", "two hours"]),
    ("fault duration zero", PREFLIGHT + ["--namespace", "{ns}", "--node", "{node}", "--xid", "79", "--fault-duration", "0s"]),
    (
        "run id invalid",
        ["step", "preflight", "--run-id", "Bad_ID", "--target", "dgd/llm", "--namespace", "{ns}", "--node", "{node}", "--xid", "79"],
    ),
    (
        "target kind invalid",
        ["step", "preflight", "--run-id", "r1", "--target", "pod/llm", "--namespace", "{ns}", "--node", "{node}", "--xid", "79"],
    ),
    ("node already cordoned", PREFLIGHT + ["--namespace", "{ns}", "--node", "{cordoned}", "--xid", "79"]),
    ("toggle dir relative", PREFLIGHT + ["--namespace", "{ns}", "--node", "{node}", "--xid", "79", "--toggle-dir", "var/lib"]),
    ("max nodes zero", PREFLIGHT + ["--namespace", "{ns}", "--node", "{node}", "--xid", "79", "--max-nodes", "0"]),
    (
        "shim without ledger",
        [
            "step",
            "inject-cuda-shim",
            "--run-id",
            "r9",
            "--namespace",
            "{ns}",
            "--target",
            "dgd/llm",
            "--shim-image",
            "shim:1",
            "--xid",
            "79",
        ],
    ),
    # issue 15 item 2: images are installation configuration
    (
        "shim image not the installed one",
        [
            "step",
            "inject-cuda-shim",
            "--run-id",
            "r9",
            "--namespace",
            "{ns}",
            "--target",
            "dgd/llm",
            "--shim-image",
            "evil:1",
            "--xid",
            "79",
        ],
    ),
    (
        "preflight steps image not the installed one",
        PREFLIGHT + ["--namespace", "{ns}", "--node", "{node}", "--xid", "79", "--steps-image", "evil:1"],
    ),
    (
        "preflight shim image not the installed one",
        PREFLIGHT + ["--namespace", "{ns}", "--node", "{node}", "--xid", "79", "--shim-image", "evil:1"],
    ),
    (
        "network preflight with an image",
        [
            "step",
            "preflight",
            "--run-id",
            "r1",
            "--target",
            "dgd/llm",
            "--fault",
            "network",
            "--namespace",
            "{ns}",
            "--steps-image",
            "steps:1",
        ],
    ),
    ("suite gate scenarios not a list", ["step", "suite-gate", "--suite-run", "u", "--scenarios", "gpu-fault"]),
    (
        "shim image empty",
        ["step", "inject-cuda-shim", "--run-id", "r9", "--namespace", "{ns}", "--target", "dgd/llm", "--shim-image", " ", "--xid", "79"],
    ),
    (
        "shim timeout malformed",
        [
            "step",
            "inject-cuda-shim",
            "--run-id",
            "r9",
            "--namespace",
            "{ns}",
            "--target",
            "dgd/llm",
            "--shim-image",
            "s:1",
            "--xid",
            "79",
            "--timeout",
            "soon",
        ],
    ),
    ("cleanup without ledger", ["step", "cleanup-dgd", "--run-id", "r9", "--namespace", "{ns}"]),
    ("cordon wait node missing", ["step", "wait-for-cordon", "--node", "no-such-node", "--xid", "79", "--timeout", "1s"]),
    ("cordon wait evicted without target", ["step", "wait-for-cordon", "--node", "{node}", "--xid", "79", "--wait-evicted"]),
    # Issue 15 item 4: the reach daemon.
    (
        "reach watch node missing",
        [
            "step",
            "watch-reach",
            "--node",
            "no-such-node",
            "--xid",
            "79",
            "--namespace",
            "{ns}",
            "--target",
            "dgd/llm",
            "--outputs-dir",
            "{tdir}/o",
        ],
    ),
    (
        "reach watch xid unknown",
        [
            "step",
            "watch-reach",
            "--node",
            "{node}",
            "--xid",
            "999",
            "--namespace",
            "{ns}",
            "--target",
            "dgd/llm",
            "--outputs-dir",
            "{tdir}/o",
        ],
    ),
    (
        "reach watch without outputs",
        ["step", "watch-reach", "--node", "{node}", "--xid", "79", "--namespace", "{ns}", "--target", "dgd/llm"],
    ),
    ("recover needs run or all", ["faults", "recover"]),
    ("restore-node without ledger", ["step", "restore-node", "--run-id", "r9", "--namespace", "{ns}", "--restore-node"]),
    # Issue 15 items 8, 11, 14 and the Low items.
    ("recover a run nobody knows", ["faults", "recover", "no-such-run"]),
    (
        "cleanup with nothing to do",
        ["step", "cleanup-dgd", "--run-id", "r1", "--namespace", "{ns}", "--no-toggle-off", "--no-restore-workload"],
    ),
    ("preflight into pod security baseline", PREFLIGHT + ["--namespace", "{psa}", "--node", "{node}", "--xid", "79"]),
    ("preflight against a quota the init container misses", PREFLIGHT + ["--namespace", "{quota}", "--node", "{node}", "--xid", "79"]),
    (
        "gate against the metadata service",
        ["step", "verify-inference", "--mode", "gate", "--url", "http://169.254.169.254", "--outputs-dir", "{tdir}/o"],
    ),
    ("load to an outside host", ["step", "load", "--url", "http://example.com:8000", "--duration", "1", "--outputs-dir", "{tdir}/o"]),
    # Issue 18: PromQL probes and `report compare` (the outputs directories would appear in {tdir}).
    *(
        (f"report {name}", ["step", "report", "--input", "{kmsg}", "--outputs-dir", "{tdir}/report", *args])
        for name, args in (
            ("check without comparison", ["--check", "promql:up", "--prometheus-url", "http://127.0.0.1:9"]),
            ("check of unknown kind", ["--check", "sql:select 1 > 0", "--prometheus-url", "http://127.0.0.1:9"]),
            ("check value not a number", ["--check", "promql:up > high", "--prometheus-url", "http://127.0.0.1:9"]),
            ("check without prometheus", ["--check", "promql:up > 0"]),
        )
    ),
    ("report compare one run only", ["report", "compare", "{kmsg}", "--outputs-dir", "{tdir}/compare"]),
    ("report compare missing file", ["report", "compare", "{tdir}/nope.json", "{tdir}/toggle", "--outputs-dir", "{tdir}/compare"]),
    ("report compare not a report", ["report", "compare", "{kmsg}", "{tdir}/toggle", "--outputs-dir", "{tdir}/compare"]),
    ("report compare bad tolerance", ["report", "compare", "{kmsg}", "{kmsg}", "--tolerance", "recovery", "--outputs-dir", "{tdir}/c"]),
    # Issue 18: stop conditions are refused whole before anything is injected, and the halt's own options.
    (
        "preflight abort-if malformed",
        PREFLIGHT + ["--namespace", "{ns}", "--node", "{node}", "--xid", "79", "--abort-if", "availability<<0.5"],
    ),
    (
        "preflight abort-if promql without prometheus",
        PREFLIGHT + ["--namespace", "{ns}", "--node", "{node}", "--xid", "79", "--abort-if", "promql:up == 0 for 5s"],
    ),
    (
        "network preflight abort-if malformed",
        [
            "step",
            "preflight",
            "--run-id",
            "r1",
            "--target",
            "dgd/llm",
            "--fault",
            "network",
            "--namespace",
            "{ns}",
            "--abort-if",
            "cordoned>1.5",
        ],
    ),
    *(
        (f"watch-abort {name}", ["step", "watch-abort", "--run-id", "r1", "--outputs-dir", "{tdir}/o", *args])
        for name, args in (
            ("unknown metric", ["--abort-if", "latency>5s"]),
            ("availability above one", ["--abort-if", "availability<1.5 for 5s"]),
            ("p99 without unit", ["--abort-if", "p99>2000 for 5s"]),
            ("for without unit", ["--abort-if", "cordoned>1 for 5"]),
            ("empty condition", ["--abort-if", "cordoned>1;;breaker>0.5"]),
            ("availability without url", ["--abort-if", "availability<0.5 for 5s"]),
            ("to an outside frontend", ["--abort-if", "availability<0.5 for 5s", "--url", "http://example.com:8000"]),
            ("prometheus url not http", ["--abort-if", "promql:up == 0", "--prometheus-url", "ftp://p:9090"]),
            ("interval zero", ["--abort-if", "cordoned>1", "--interval", "0"]),
        )
    ),
    ("halt clear with a reason", ["halt", "--clear", "--reason", "x"]),
    ("halt clear and status", ["halt", "--clear", "--status"]),
    ("halt reason of two lines", ["halt", "--reason", "a\nb"]),
    ("halt json without status", ["halt", "--json"]),
]


@pytest.fixture
def world(gpu_cluster, unique, tmp_path):
    kube = gpu_cluster.kube()
    ns, closed, node, node2 = f"ns-{unique}", f"closed-{unique}", f"gpu-{unique}", f"gpu2-{unique}"
    make_namespace(kube, ns)
    make_namespace(kube, closed, opted_in=False)
    make_gpu_node(kube, node)
    make_gpu_node(kube, node2)
    cordoned = f"gpu3-{unique}"
    make_gpu_node(kube, cordoned, unschedulable=True)  # issue 15 item 13
    make = dgd_v1alpha1 if gpu_cluster.version == "v1alpha1" else dgd_v1beta1
    # Issue 15 item 11: a namespace whose Pod Security refuses hostPath, one whose quota needs a resource
    # the shim's init container does not set.
    psa, quota = f"psa-{unique}", f"quota-{unique}"
    for name in (psa, quota):
        make_namespace(kube, name)
    kube.merge_patch(Ref("v1", "namespaces", None, psa), {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}})
    hard = {"limits.ephemeral-storage": "1Ti"}
    kube.create(
        Ref("v1", "resourcequotas", quota, ""),
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"}, "spec": {"hard": hard}},
    )
    objects = [make(name="llm", namespace=n) for n in (ns, closed, psa, quota)] + [no_gpu_workers(make(name="nogpu", namespace=ns))]
    for obj in objects:
        kube.create(dgd_ref(obj), obj)
    tdir = tmp_path / "toggle"
    tdir.mkdir()
    toggle.write(tdir / "toggle", toggle.Toggle(on=False))
    linkdir, foreign = tmp_path / "linkdir", tmp_path / "foreign"
    linkdir.mkdir()
    (linkdir / "toggle").symlink_to(tdir / "toggle")
    foreign.mkdir()
    (foreign / "toggle").write_text("someone else's file\n")
    kmsg = tmp_path / "kmsg"
    kmsg.write_bytes(b"")
    proc = make_proc(tmp_path / "proc", [("0000:17:00.0", 0)])
    values = {
        "ns": ns,
        "closed": closed,
        "node": node,
        "node2": node2,
        "cordoned": cordoned,
        "kmsg": str(kmsg),
        "proc": str(proc),
        "tdir": str(tdir),
        "linkdir": str(linkdir),
        "foreign": str(foreign),
        "psa": psa,
        "quota": quota,
    }
    refs = [dgd_ref(make(name="llm", namespace=n)) for n in (ns, closed, psa, quota)]

    def snapshot() -> str:
        state = {
            "dgds": [kube.get(r) for r in refs],
            "nodes": [kube.get(Ref("v1", "nodes", None, n)) for n in (node, node2)],
            "configmaps": kube.list(Ref("v1", "configmaps", ns, "")).get("items"),
            "ledgers": kube.list(Ref("v1", "configmaps", HOME, "")).get("items"),  # issue 15: ledgers live there
            "toggle": (tdir / "toggle").read_bytes().decode(),
            "kmsg": kmsg.read_bytes().decode(),
            "tdir": sorted(p.name for p in tdir.iterdir()),
            "foreign": (foreign / "toggle").read_text(),
            "dirs": sorted(str(p.relative_to(tmp_path)) for p in (*linkdir.iterdir(), *foreign.iterdir())),
        }
        return json.dumps(state, sort_keys=True)

    return values, snapshot


def test_bad_input_matrix(gpu_cluster, world):
    values, snapshot = world
    assert len(CASES) >= 25
    failures = bad_input_failures(gpu_cluster, CASES, values, snapshot)
    print(f"bad-input cases: {len(CASES) - len(failures)} of {len(CASES)} exit 2 with one line and no change")
    assert failures == [], "\n".join(failures)
