"""vllm-stack pure core: typed config, catalogs, sizing, cost and artifact renderers.

Nothing in this package imports Pulumi except `vllm_stack.offline`, which drives the
Pulumi SDK's mock engine for the offline plan (tests/unit/test_core_is_pure.py holds
the line).
"""
__version__ = "0.1.0"
