"""vllm-stack: self-hosted vLLM as Pulumi components, with a pure core.

The pure core (typed config, the deployment model, catalogs, sizing, cost, renderers) imports
no Pulumi. The Pulumi side is `vllm_stack.components` (one class per platform variant),
`vllm_stack.stack` (this repository's program) and `vllm_stack.offline` (the mock-engine plan);
tests/unit/test_docs_and_purity.py holds the line between them.
"""

__version__ = "0.1.0"
