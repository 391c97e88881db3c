# Isthmus — every target installs what it needs, then runs.
#   make demo    a real mixed Swift + Python pipeline on generated data
#   make test    every test suite (swift test, pytest, protocol vectors, end-to-end)
#   make bench   the benchmark workloads, as ratios to baselines measured in the same run
#   make bench-anchors  PySpark and Ray Data on the same workloads (own virtualenv, needs Java 17)
#   make bench-scaling  W2 with 1 to 12 workers, for a machine with many cores
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
SWIFT_FLAGS ?=
DEBUG_BIN := .build/debug/isthmus
RELEASE_BIN := .build/release/isthmus
SYSTEM_PACKAGES := libzmq3-dev liblz4-dev libzstd-dev pkg-config
PY_PACKAGES := pyarrow pyzmq numpy pandas pytest hypothesis
ANCHORS_VENV ?= .venv-anchors
ANCHORS_PY := $(ANCHORS_VENV)/bin/python
# pyspark 4 asks for pandas < 3 ("does not yet fully support pandas >= 3.0.0").
ANCHORS_BASE := pyarrow "pandas<3" numpy
ANCHORS_SYSTEMS := pyspark "ray[data]"
ANCHORS_FLAGS ?=

.PHONY: help deps system-deps venv build build-release test swift-test py-test e2e-test demo bench bench-scaling anchors-venv bench-anchors chaos fuzz clean

help:
	@echo "make demo   - run the demo pipeline (installs what it needs)"
	@echo "make test   - run every test suite (installs what it needs)"
	@echo "make bench  - run the benchmarks"
	@echo "make bench-anchors - PySpark and Ray Data on the bench workloads (ANCHORS_FLAGS=--quick)"
	@echo "make bench-scaling - W2 with 1, 2, 4, 8, 12 workers (SCALE_FLAGS=--scale-workload W1)"
	@echo "make chaos  - run the long fault-injection suite"
	@echo "make fuzz   - build the libFuzzer target and fuzz Arrow IPC decoding (FUZZ_SECONDS=300)"

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  if [ "$$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: python/pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(PY_PACKAGES)
	$(PY) -m pip install -q --disable-pip-version-check -e ./python
	@touch $@

venv: $(VENV)/.installed

deps: system-deps venv

build: system-deps
	swift build $(SWIFT_FLAGS)

build-release: system-deps
	swift build -c release $(SWIFT_FLAGS)

swift-test: deps build
	ISTHMUS_PYTHON=$(abspath $(PY)) swift test $(SWIFT_FLAGS)

py-test: deps
	$(PY) -m pytest -q python/tests

e2e-test: deps build
	ISTHMUS_BIN=$(abspath $(DEBUG_BIN)) ISTHMUS_PYTHON=$(abspath $(PY)) $(PY) -m pytest -q Tests/e2e

test: swift-test py-test e2e-test
	@echo "all test suites passed"

demo: deps build-release
	ISTHMUS_PYTHON=$(abspath $(PY)) $(RELEASE_BIN) demo --python $(abspath $(PY))

bench: deps build-release
	$(PY) -m pip install -q --disable-pip-version-check matplotlib
	ISTHMUS_BIN=$(abspath $(RELEASE_BIN)) ISTHMUS_PYTHON=$(abspath $(PY)) $(PY) bench/run.py

# Worker counts that leave the host no core of its own are skipped, so this is for machines with
# more than 12 cores. On one without a Swift toolchain, bench/bundle.sh packs the CLI.
SCALE_FLAGS ?=
bench-scaling: deps build-release
	$(PY) -m pip install -q --disable-pip-version-check matplotlib
	ISTHMUS_BIN=$(abspath $(RELEASE_BIN)) ISTHMUS_PYTHON=$(abspath $(PY)) $(PY) bench/run.py --only SCALE $(SCALE_FLAGS)

# The anchors get their own virtualenv: pyspark and ray pin versions of their own and must not
# change what .venv (and so the tests and the workers) runs with. A system that does not install
# (or, for pyspark, finds no java) still lets the other run: bench/anchors.py reports its cases
# as failed with the reason, and the next make tries the install again.
$(ANCHORS_VENV)/.installed: Makefile
	@test -x $(ANCHORS_PY) || python3 -m venv $(ANCHORS_VENV)
	$(ANCHORS_PY) -m pip install -q --disable-pip-version-check $(ANCHORS_BASE)
	@ok=1; for p in $(ANCHORS_SYSTEMS); do \
	  echo "$(ANCHORS_PY) -m pip install -q $$p"; \
	  $(ANCHORS_PY) -m pip install -q --disable-pip-version-check "$$p" || { ok=0; \
	    echo "warning: pip could not install $$p: its anchors will be reported as failed"; }; \
	done; \
	command -v java >/dev/null || echo "warning: no java on PATH: pyspark needs Java 17 or newer (apt-get install openjdk-17-jre-headless)"; \
	if [ $$ok = 1 ]; then touch $@; fi

anchors-venv: $(ANCHORS_VENV)/.installed

bench-anchors: anchors-venv
	$(ANCHORS_PY) bench/anchors.py $(ANCHORS_FLAGS)

chaos: deps build
	ISTHMUS_BIN=$(abspath $(DEBUG_BIN)) ISTHMUS_PYTHON=$(abspath $(PY)) $(PY) Tests/e2e/chaos.py

fuzz: system-deps
	FUZZ_SECONDS=$${FUZZ_SECONDS:-300} Tests/fuzz/run.sh

clean:
	rm -rf .build $(VENV) $(ANCHORS_VENV)
