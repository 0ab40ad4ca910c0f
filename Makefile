# faultflow — every entry point a person or CI uses. Each target installs what it needs itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-12)

.PHONY: all venv shim test bench demo shim-demo clean catalogue envtest node-packages real-lab-tools

all: shim

# One virtual environment for tests, benchmarks and the demo. The stamp carries a hash of
# pyproject.toml so a changed pin reinstalls.
venv: $(STAMP)
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "faultflow: python3 (3.11+) is required: apt-get install python3 python3-venv" >&2; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==25.3
	$(PY) -m pip install -q -e '.[workflows,lab,test]'
	@rm -f $(VENV)/.installed-*; touch $@

# The shim's C table is generated from the XID catalogue (stdlib-only generator), then built with gcc alone.
catalogue:
	$(PYTHON) -m steps.shim_header --write shim/xid_table.h

shim: catalogue
	$(MAKE) -C shim

# The tests' real control plane: etcd and kube-apiserver built from Go source at pinned versions
# and the pinned upstream CRDs (lab/tools.py, lab/crds.py; entry point lab/prepare.py), cached in ~/.cache/faultflow/envtest.
# Only the first run builds (a few minutes); later runs find everything cached.
envtest: venv
	$(PY) -m lab.prepare build

# The real lab's nodes run Debian's containerd, runc, CNI plugins and iptables; its images are made with
# mmdebstrap and umoci (lab/nodes/packages.py). Installed with apt-get (update first) when missing;
# a one-line error where that is impossible (not root, no apt-get).
node-packages:
	@$(PYTHON) -m lab.nodes.packages

# kubelet, kube-controller-manager, kube-scheduler, kube-proxy and CoreDNS for the real lab, one at a
# time (2 cores), and the images it imports into each node.
real-lab-tools: venv node-packages
	$(PY) -m lab.prepare build kube-scheduler kube-proxy kube-controller-manager kubelet coredns
	$(PY) -m lab.images.build

test: venv shim envtest node-packages
	$(PY) -m pytest

bench: venv shim envtest
	@set -e; for b in bench/bench_*.py; do $(PY) $$b; done

# The shim alone, no cluster: a CUDA program failing when the toggle flips.
shim-demo: venv shim
	$(PY) -m lab.shim_demo

demo: venv shim envtest
	$(PY) -m lab.demo

clean:
	$(MAKE) -C shim clean
	rm -rf $(VENV) .pytest_cache

# deploy/ (kustomize base) from the scenario declarations in workflows/; a test fails when it is stale.
.PHONY: render
render: venv
	$(VENV)/bin/faultflow render --out deploy

# Container images (images/steps, images/shim) where a Docker engine answers; otherwise say why.
.PHONY: images
images:
	@docker info >/dev/null 2>&1 || { echo "faultflow: make images needs a running Docker engine (docker info failed); build elsewhere with: docker build -f images/steps/Dockerfile ." >&2; exit 2; }
	docker build -f images/steps/Dockerfile -t faultflow-steps:0.1.0 .
	docker build -f images/shim/Dockerfile -t faultflow-shim:0.1.0 .
