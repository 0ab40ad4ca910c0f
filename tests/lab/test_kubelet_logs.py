"""The KUBELET LOG SIMULATOR behind the real kube-apiserver's pods/log proxy: the API server reaches it
with its kubelet client certificate, log options arrive as the kubelet gets them, and a caller without
a certificate from the cluster CA is refused, as by a kubelet."""

from __future__ import annotations

import ssl
import urllib.request

import pytest

from lab.kubelet_logs import KubeletLogSimulator
from steps.kube.client import NotFound, Ref, connect


def test_pod_logs_through_the_api_server(cluster, namespace, tmp_path):
    kube = connect(str(cluster.kubeconfig))
    node = f"kl-{namespace}"
    kube.create(Ref("v1", "nodes", None, ""), {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
    with KubeletLogSimulator(tmp_path / "logs", cluster.pki) as kubelet:
        kube.request(
            "PATCH", f"/api/v1/nodes/{node}/status", content_type="application/merge-patch+json", body={"status": kubelet.node_status()}
        )
        kube.create(
            Ref("v1", "pods", namespace, ""),
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p"},
                "spec": {"nodeName": node, "containers": [{"name": "main", "image": "i"}, {"name": "side", "image": "i"}]},
            },
        )
        kubelet.register(namespace, "p", "main").write_text("one\ntwo\nthree\n")
        logs = f"/api/v1/namespaces/{namespace}/pods/p/log"
        assert kube.request_text("GET", f"{logs}?container=main") == "one\ntwo\nthree\n"
        assert kube.request_text("GET", f"{logs}?container=main&tailLines=2") == "two\nthree\n"
        assert kube.request_text("GET", f"{logs}?container=main&limitBytes=5") == "one\nt"
        with pytest.raises(NotFound):
            kube.request_text("GET", f"{logs}?container=side")  # a container the kubelet has no log for
        anonymous = ssl.create_default_context(cafile=str(cluster.pki.ca_cert))
        with pytest.raises((ssl.SSLError, ConnectionError, urllib.request.URLError)):
            urllib.request.urlopen(
                f"https://127.0.0.1:{kubelet.port}/containerLogs/{namespace}/p/main", context=anonymous, timeout=10
            ).read()


def test_follow_streams_appended_output_until_the_container_stops(cluster, namespace, tmp_path):
    """`follow=true` as the kubelet answers it: what the log holds, then what is appended, through the
    API server's proxy, and the end of the stream once the container stopped (after its last lines)."""
    kube = connect(str(cluster.kubeconfig))
    node = f"kf-{namespace}"
    kube.create(Ref("v1", "nodes", None, ""), {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
    with KubeletLogSimulator(tmp_path / "logs", cluster.pki) as kubelet:
        kube.request(
            "PATCH", f"/api/v1/nodes/{node}/status", content_type="application/merge-patch+json", body={"status": kubelet.node_status()}
        )
        kube.create(
            Ref("v1", "pods", namespace, ""),
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "f"},
                "spec": {"nodeName": node, "containers": [{"name": "main", "image": "i"}]},
            },
        )
        log = kubelet.register(namespace, "f", "main")
        log.write_text("one\n")
        stream = kube.stream_lines(f"/api/v1/namespaces/{namespace}/pods/f/log?container=main&follow=true")
        assert next(stream) == ""  # open
        assert next(stream) == "one"
        with log.open("a") as out:
            out.write("two\n")
        assert next(stream) == "two"  # appended after the stream opened
        with log.open("a") as out:
            out.write("last words\n")
        kubelet.stop(namespace, "f", "main")
        assert list(stream) == ["last words"]  # then the end
