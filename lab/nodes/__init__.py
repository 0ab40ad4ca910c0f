"""The real lab: a Kubernetes cluster of real kubelets on this one machine (issue 14's foundation).

    lab/nodes/packages.py   Debian packages the nodes run on (`make node-packages`)
    lab/nodes/nsinit.py     PID 1 of a node's (or the hub's) network + mount + PID namespaces
    lab/nodes/namespaces.py starting a holder, running things inside it (nsenter)
    lab/nodes/ledger.py     what was made (pids with start times, cgroups) and `teardown`
    lab/nodes/relay.py      the host's one TCP way into the hub (the API server)
    lab/nodes/node.py       one node: cgroups, private mounts, containerd, CNI bridge, kubelet, kube-proxy
    lab/nodes/cluster.py    hub + control plane (Node,RBAC, NodeRestriction, controller-manager,
                            scheduler) + nodes + CoreDNS: `RealCluster`
    lab/nodes/coredns.py    CoreDNS's objects (kube-system, Service kube-dns 10.0.0.10)
    lab/nodes/gpu_plugin.py GPU device plugin (deviceplugin/main.go, the kubelet device-plugin API)
    python -m lab.nodes up|down --dir DIR    by hand

A real lab's directory:

    DIR/made.jsonl           the ledger (every pid and cgroup, written before it is made)
    DIR/kubeconfig           admin, through the relay (https://127.0.0.1:<port>)
    DIR/pki/                 the lab CA (with its key), component and node certificates, kubeconfigs
    DIR/hub/                 the hub's holder files, etcd data; DIR/logs/ control-plane logs
    DIR/nodes/<node>/        containerd root (c/), CNI config and IPAM, pod logs, kubelet config and
                             log, varlib-upper/ (the node's writes to /var/lib: kubelet root,
                             hostPaths such as /var/lib/faultflow), varlog/ (its /var/log, with
                             kmsg.log: what the node's /dev/kmsg received), sysctl/ (the values
                             the kubelet reads)
"""
