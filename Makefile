# faultflow — every entry point a person or CI uses. Each target installs what it needs itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-12)

.PHONY: all help venv shim test lint format bench demo shim-demo clean catalogue envtest gpu-check node-packages real-lab-tools prometheus

all: shim ## build the CUDA shim (the default target)

# Every target carries one `## ` comment on its rule line; this prints them (tests/test_makefile.py checks).
help: ## list the targets
	@grep -E '^[a-z][a-z-]*:.*## ' $(firstword $(MAKEFILE_LIST)) | sort | awk -F ':.*## ' '{ printf "  %-10s %s\n", $$1, $$2 }'

# One virtual environment for tests, benchmarks and the demo. The stamp carries a hash of
# pyproject.toml so a changed pin reinstalls.
venv: $(STAMP) ## the virtual environment .venv (every extra: workflows, lab, test, lint)
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "faultflow: python3 (3.11+) is required: apt-get install python3 python3-venv" >&2; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==25.3
	$(PY) -m pip install -q -e '.[workflows,lab,test,lint]'
	@rm -f $(VENV)/.installed-*; touch $@

# The shim's C table is generated from the XID catalogue (stdlib-only generator), then built with gcc alone.
catalogue: ## regenerate shim/xid_table.h from the XID catalogue
	$(PYTHON) -m steps.gpu.shim_header --write shim/xid_table.h

shim: catalogue ## build the CUDA shim (gcc)
	$(MAKE) -C shim

# The tests' real control plane: etcd and kube-apiserver built from Go source at pinned versions
# and the pinned upstream CRDs (lab/tools.py, lab/crds.py; entry point lab/prepare.py), cached in ~/.cache/faultflow/envtest.
# Only the first run builds (a few minutes); later runs find everything cached.
envtest: venv ## build or reuse the tests' control plane (etcd, kube-apiserver, CRDs)
	$(PY) -m lab.prepare build

# The real lab's nodes run Debian's containerd, runc, CNI plugins and iptables; its images are made with
# mmdebstrap and umoci (lab/nodes/packages.py). Installed with apt-get (update first) when missing;
# a one-line error where that is impossible (not root, no apt-get).
node-packages: ## install the real lab's Debian packages when missing (containerd, runc, CNI, iptables, umoci, mmdebstrap)
	@$(PYTHON) -m lab.nodes.packages

# kubelet, kube-controller-manager, kube-scheduler, kube-proxy and CoreDNS for the real lab, one at a
# time (2 cores), the S3 server of its artifact repository (versitygw), its GPU device plugin (with the
# NVML simulator and interposer it loads), and the images it imports into each node (among them both
# Argo lines' controller and executor, whose binaries lab.images.build builds). Built here, before
# pytest, so no test waits on a first build under its timeout.
real-lab-tools: venv node-packages ## build or reuse the real lab's node components and images
	$(PY) -m lab.prepare build kube-scheduler kube-proxy kube-controller-manager kubelet coredns kubectl versitygw
	$(PY) -m lab.nodes.gpu_plugin
	$(PY) -m lab.images.build

# The lab's Prometheus (Debian's package, fetched with apt-get download and unpacked, never installed:
# its maintainer scripts would start a system service here), cached like the control plane. Fetched
# before pytest, so no lab test waits on a first download.
prometheus: venv ## fetch or reuse the lab's Prometheus (lab/prometheus.py)
	$(PY) -m lab.prometheus

# The README's (and so .ci/run's) test command: lint first, so CI checks it too.
test: lint shim envtest real-lab-tools prometheus ## lint, then the whole test suite
	$(PY) -m pytest

# Every checker runs even when an earlier one fails, so one run shows everything; the exit status says
# whether all passed. Settings and reasons: pyproject.toml ([tool.ruff], [tool.importlinter], [tool.mypy]).
lint: venv ## ruff (check, format --check), import-linter layer contracts, mypy
	@status=0; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/ruff format --check . || status=1; \
	$(VENV)/bin/lint-imports --no-cache --no-logo || status=1; \
	$(VENV)/bin/mypy || status=1; \
	exit $$status

# What a developer runs before committing: the safe ruff fixes (import order, 3.11 idioms), then the formatter.
format: venv ## apply ruff's safe fixes and the formatter to the tree
	$(VENV)/bin/ruff check --fix-only .
	$(VENV)/bin/ruff format .

bench: venv shim envtest ## the benchmarks (figures as `name: value` lines)
	@set -e; for b in bench/bench_*.py; do $(PY) $$b; done

# The fault libraries on a real NVIDIA GPU: PyTorch's exception per seed XID, the launch passthrough ratio,
# the NVML event a go-nvml consumer sees and nvidia-smi's view (lab/gpu_check.py). Without a GPU: one
# line, exit 2. Standard library only, so it runs before any virtual environment exists.
gpu-check: ## the shim and NVML interposer on a real NVIDIA GPU (exit 2 without one)
	@$(PYTHON) -m lab.gpu_check

# The shim alone, no cluster: a CUDA program failing when the toggle flips.
shim-demo: venv shim ## the shim alone: a CUDA program failing when the toggle flips
	$(PY) -m lab.shim_demo

demo: venv shim envtest prometheus ## a whole scenario against the lab cluster
	$(PY) -m lab.demo

clean: ## remove the venv and build outputs
	$(MAKE) -C shim clean
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache

# deploy/ (kustomize base) from the scenario declarations in workflows/; a test fails when it is stale.
.PHONY: render
render: venv ## write deploy/ from the scenario declarations
	$(VENV)/bin/faultflow render --out deploy

# Container images (images/steps, images/shim, images/node-agent). With a Docker engine: docker build, as a registry build
# does. Without one: the lab's pipeline (lab/images/product.py: the same Dockerfiles' user, entry point
# and paths, umoci layers over a Debian base made with mmdebstrap) into the image cache, where the real
# lab's nodes import them from. Either way it says which.
.PHONY: images
images: ## build the container images (Docker where an engine answers, else the lab's pipeline)
	@if docker info >/dev/null 2>&1; then \
		echo "faultflow: building the images with Docker"; \
		docker build -f images/steps/Dockerfile -t faultflow-steps:0.1.0 . && \
		docker build -f images/shim/Dockerfile -t faultflow-shim:0.1.0 . && \
		docker build -f images/node-agent/Dockerfile -t faultflow-node-agent:0.1.0 .; \
	else \
		echo "faultflow: no Docker engine answers (docker info): building the images with the lab's pipeline (mmdebstrap + umoci, no Docker)"; \
		$(MAKE) -s venv node-packages && $(PY) -m lab.images.build faultflow-steps faultflow-shim faultflow-node-agent; \
	fi
