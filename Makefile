# Two commands on a fresh machine:  make plan STACK=dev   and   make test
STACK ?= dev
PY := .venv/bin/python
PYTEST := $(PY) -m pytest -p no:cacheprovider

.PHONY: venv tools vllm-venv plan lint format test test-fast test-vllm bench docs clean lock

venv:
	@bash scripts/bootstrap.sh venv

# The hashed locks that `make venv` installs (pip install --require-hashes), regenerated from the
# pins of requirements.txt and requirements-dev.txt by pip-tools in a throwaway venv outside the tree.
# PyPI only: the machine's pip config and find-links (local wheel caches) are ignored, so the hashes
# are those of every file of each pinned release (all platforms), not of whatever lies on this disk.
# Unchanged transitive pins are kept; `make lock LOCK_ARGS=--upgrade` re-resolves them to the newest.
LOCK_VENV ?= /tmp/vllm-stack-pip-tools
LOCK_ENV := env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null CUSTOM_COMPILE_COMMAND="make lock"
PIP_COMPILE := $(LOCK_ENV) $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links $(LOCK_ARGS)
lock:
	@test -x $(LOCK_VENV)/bin/pip-compile || { python3 -m venv $(LOCK_VENV) && \
	  $(LOCK_ENV) $(LOCK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check pip-tools==7.6.2; }
	$(PIP_COMPILE) -o requirements.lock requirements.txt
	$(PIP_COMPILE) -o requirements-dev.lock requirements-dev.txt

tools: venv
	@bash scripts/bootstrap.sh tools
	@bash scripts/vllm_router_venv.sh >/dev/null

vllm-venv:
	@bash scripts/vllm_cpu_venv.sh >/dev/null

plan: venv
	$(PY) -m vllm_stack plan $(STACK) --out out/$(STACK)

docs: venv
	$(PY) -m vllm_stack docs

# ruff and mypy read pyproject.toml. mypy: strict on vllm_stack/, error-free on the rest; the pack's
# entry point is a second `__main__`, so it is checked on its own. `make format` rewrites.
lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m mypy policies/__main__.py

# Every tier: pure unit, program under mocks, policies, real tools, loopback e2e, real vLLM on CPU.
test: lint tools vllm-venv
	$(PYTEST) -q tests

test-fast: tools
	$(PYTEST) -q tests/unit tests/stack tests/policy

test-vllm: tools vllm-venv
	$(PYTEST) -q tests/real_vllm

bench: tools
	$(PY) -m bench.run_all

format: venv
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf out .pytest_cache
