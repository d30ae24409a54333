# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv and install what they need; nothing is installed by hand.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
TAO_CORE_VERSION := 7.3.0
TORCH_VERSION    := 2.13.0

.PHONY: demo test venv venv-dev bench-smoke clean slurm-up slurm-down engine-up worker-image

# Fails when a requirement pulled a CUDA build of torch (several GB of nvidia-* wheels).
# Allowed nvidia-* packages: TAO Core (maintainer tooling), ModelOpt and its NVML bindings
# (pure Python, no CUDA runtime).
NO_CUDA_WHEELS = @if $(PY) -m pip list 2>/dev/null | grep -i '^nvidia-' \
	| grep -qviE '^nvidia-(tao-core|modelopt|ml-py) '; then \
	echo "ERROR: CUDA wheels (nvidia-*) were installed; a requirement pulled a newer torch" >&2; exit 1; fi

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Runtime install (the SDK and the packaged skill bank).
$(VENV)/.runtime: pyproject.toml | $(VENV)/bin/python
	$(PIP) -e .
	touch $@

# Dev install: test tools, plus TAO Core (--no-deps, maintainer tooling only) so that
# CI proves the generated schemas/templates are up to date.
$(VENV)/.dev: pyproject.toml $(VENV)/.runtime
	$(PIP) torch==$(TORCH_VERSION)
	$(PIP) -e '.[dev,maintainer,worker,quantize,automl,bench,mcp,datasets,tracking]'
	$(NO_CUDA_WHEELS)
	$(PIP) --no-deps nvidia-tao-core==$(TAO_CORE_VERSION)
	touch $@

venv: $(VENV)/.runtime
venv-dev: $(VENV)/.dev

# The demo trains a real model: the worker extra (torch CPU wheel first, so no CUDA wheels).
$(VENV)/.worker: pyproject.toml $(VENV)/.runtime
	$(PIP) torch==$(TORCH_VERSION)
	$(PIP) -e '.[worker]'
	$(NO_CUDA_WHEELS)
	touch $@

demo: $(VENV)/.worker
	TAO_SKILLS_WORKSPACE=$${TAO_SKILLS_WORKSPACE:-$(CURDIR)/.tao-workspace} $(VENV)/bin/tao-skills demo

test: $(VENV)/.dev
	$(PY) -m ruff check --select F,E9 --output-format concise tao_sdk tools benchmarks tests runners
	$(PY) -m mypy   # --strict on the public API modules listed in pyproject.toml [tool.mypy]
	$(PY) tools/gen_schemas.py --check
	$(PY) tools/gen_runners.py --check
	$(PY) tools/gen_presets.py --check
	$(PY) tools/gen_plugin.py --check
	$(PY) tools/check_structure.py   # no import cycle in tao_sdk, no new function over 80 lines
	@# The `slurm` tests need the real two-node test cluster: started here (apt-installs
	@# slurm-wlm + munge when missing; root), stopped afterwards unless it was already up.
	@# Under CI=true a cluster that cannot start fails the run; elsewhere those tests skip.
	@# The `docker` tests need a real container engine: podman + runc, installed when missing (root)
	@# by tools/container_engine.sh, which also builds the test image (cached between runs).
	@was_up=0; bash tools/slurm_cluster.sh status >/dev/null 2>&1 && was_up=1; \
	if ! bash tools/slurm_cluster.sh start >/dev/null; then \
		case "$${CI:-}" in 1|true|yes) echo "ERROR: the Slurm test cluster did not start" >&2; exit 1;; esac; \
		echo "WARNING: no Slurm test cluster (tools/slurm_cluster.sh start needs root); slurm tests skip" >&2; fi; \
	if ! PYTHON=$(PY) bash tools/container_engine.sh start >/dev/null; then \
		case "$${CI:-}" in 1|true|yes) echo "ERROR: the container engine did not start" >&2; exit 1;; esac; \
		echo "WARNING: no container engine (tools/container_engine.sh start needs root); docker tests skip" >&2; fi; \
	$(PY) -m pytest -q --durations=15; rc=$$?; \
	[ $$was_up = 1 ] || bash tools/slurm_cluster.sh stop; exit $$rc
	$(PY) -m benchmarks --smoke

# The Slurm test cluster by hand (tools/slurm_cluster.sh; `export SLURM_CONF=...` is printed).
slurm-up:
	bash tools/slurm_cluster.sh start
slurm-down:
	bash tools/slurm_cluster.sh stop

# The container engine of the docker tests by hand (podman + runc; `export CONTAINERS_CONF=...`).
engine-up:
	PYTHON=$(PY) bash tools/container_engine.sh start

# The built-in worker as a container image (docker or podman): from the Containerfile
# (tao-skill-bank-worker:<version>, BASE_IMAGE + pip) when the base image can be had; else, with no
# registry, from this venv's installed packages (tools/container_worker_image.py, ~40-60 s once,
# prints localhost/tao-skill-bank-worker:<hash>). Either name goes in TAO_DOCKER_WORKER_IMAGE.
ENGINE  ?= $(shell docker info >/dev/null 2>&1 && echo docker || echo podman)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
BASE_IMAGE ?= python:3.11-slim
worker-image:
	@if $(ENGINE) image inspect $(BASE_IMAGE) >/dev/null 2>&1 || $(ENGINE) pull -q $(BASE_IMAGE) >/dev/null 2>&1; then \
		$(ENGINE) build -f Containerfile --build-arg BASE=$(BASE_IMAGE) -t tao-skill-bank-worker:$(VERSION) . ; \
	else \
		echo "no registry for $(BASE_IMAGE): building the worker image from $(PY)'s packages" \
			"(tools/container_worker_image.py)" >&2; \
		$(PY) tools/container_worker_image.py --cli $(ENGINE); \
	fi

bench-smoke: $(VENV)/.dev
	$(PY) -m benchmarks --smoke

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
