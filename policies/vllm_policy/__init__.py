"""vLLM stack policies: plain check functions + their CrossGuard wrappers."""
