# Two commands on a fresh machine:  make plan STACK=dev   and   make test
STACK ?= dev
PY := .venv/bin/python
PYTEST := $(PY) -m pytest -p no:cacheprovider

.PHONY: venv tools vllm-venv plan lint test test-fast test-vllm bench docs clean

venv:
	@bash scripts/bootstrap.sh venv

tools: venv
	@bash scripts/bootstrap.sh tools

vllm-venv:
	@bash scripts/vllm_cpu_venv.sh >/dev/null

plan: venv
	$(PY) -m vllm_stack plan $(STACK) --out out/$(STACK)

docs: venv
	$(PY) -m vllm_stack docs

# ruff and mypy read pyproject.toml. mypy: strict on vllm_stack/, error-free on the rest; the pack's
# entry point is a second `__main__`, so it is checked on its own. (`ruff format` is not enforced:
# the tree predates it.)
lint: venv
	$(PY) -m ruff check .
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

clean:
	rm -rf out .pytest_cache
