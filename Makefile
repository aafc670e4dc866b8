PYTHON ?= python3
TOOLS := etcd kube-apiserver ipfs minio ipfs-cluster-service

.PHONY: install tools test unit e2e lint typecheck demo bench helm-crds

install:
	$(PYTHON) -m pip install -q -e '.[test]'

tools:  ## build (or reuse from ~/.cache/pinsync) the real servers the tests run
	@for t in $(TOOLS); do hack/build-tool.sh $$t >/dev/null; done

lint:
	ruff format --check operator tests
	ruff check operator tests

typecheck:
	mypy

unit:
	$(PYTHON) -m pytest tests/unit -q

e2e: tools
	$(PYTHON) -m pytest tests/e2e -q

test: tools lint typecheck  ## the whole suite, as CI runs it
	$(PYTHON) -m pytest -q -p no:cacheprovider

demo: tools
	$(PYTHON) -m pinsync.devenv.demo

bench: tools
	$(PYTHON) -m tests.bench

helm-crds:  ## copy crds/ into the chart (a unit test fails when they drift)
	cp crds/*.yaml helm/pinsync/crds/
