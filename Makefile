PYTHON ?= python3
TOOLS := etcd kube-apiserver ipfs minio ipfs-cluster-service helm kstatus servicemonitor-crd \
  kubelet kube-controller-manager kube-scheduler kube-proxy coredns pause
# The real node's images (hack/build-image.sh); the operator's is rebuilt when its source changes.
IMAGES := pause coredns base operator

.PHONY: install system-deps tools images cluster node-deps test unit e2e lint typecheck demo bench \
  helm-crds

install:  ## pip install -e .[test], unless this checkout is what Python already imports
	@$(PYTHON) -c "import sys, pinsync, pytest, ruff, mypy, importlinter, lupa; \
	  sys.exit(not pinsync.__file__.startswith('$(CURDIR)/'))" 2>/dev/null \
	  || $(PYTHON) -m pip install -q --disable-pip-version-check -e '.[test]'

system-deps:  ## kubectl, OpenSSH, containerd, buildah... (apt-get, when missing)
	@hack/system-deps.sh

tools:  ## build (or reuse from ~/.cache/pinsync) the real servers the tests run
	@for t in $(TOOLS); do hack/build-tool.sh $$t >/dev/null; done

images: tools  ## build (or reuse from ~/.cache/pinsync/images) the real node's images
	@for i in $(IMAGES); do hack/build-image.sh $$i >/dev/null; done

cluster: install system-deps tools  ## a real single-node cluster: prints its kubeconfig; Ctrl-C stops it
	$(PYTHON) -m pinsync.devenv.realnode

NODE_DIR := operator/pinsync/devenv/node

node-deps: system-deps  ## the Node.js servers some tests run: npm ci from the committed lockfile
	@[ $(NODE_DIR)/node_modules/.package-lock.json -nt $(NODE_DIR)/package-lock.json ] \
	  || npm ci --prefix $(NODE_DIR) --no-audit --no-fund --loglevel=error

lint: install  ## ruff, and the import-linter contracts in pyproject.toml (layers, independence)
	$(PYTHON) -m ruff format --check operator tests
	$(PYTHON) -m ruff check operator tests
	$(PYTHON) -c "import sys, importlinter.cli as c; sys.argv[0] = 'lint-imports'; c.lint_imports_command()"

typecheck: install
	$(PYTHON) -m mypy

unit: install
	$(PYTHON) -m pytest tests/unit -q

e2e: install system-deps tools node-deps
	$(PYTHON) -m pytest tests/e2e -q

test: install system-deps tools node-deps lint typecheck  ## the whole suite, as CI runs it
	$(PYTHON) -m pytest -q -p no:cacheprovider

# CLUSTER=1: on a real node, the operator as Pods from its image, installed by Helm.
demo: install system-deps tools
	$(PYTHON) -m pinsync.devenv.demo $(if $(CLUSTER),--cluster)

bench: install tools
	$(PYTHON) -m tests.bench

helm-crds:  ## copy crds/ and the Grafana dashboard into the chart (a unit test fails on drift)
	cp crds/*.yaml helm/pinsync/crds/
	cp manifests/grafana-dashboard.json helm/pinsync/dashboards/pinsync.json
