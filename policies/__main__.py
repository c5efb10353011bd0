"""vllm-stack CrossGuard pack entry point: ONLY the PolicyPack construction.

Constructing PolicyPack starts the analyzer's gRPC server and blocks forever, so everything
importable (checks, wrappers, config) lives in vllm_policy/; tests and the offline plan import
that package and never this file.
"""

import os
import sys

# The Pulumi CLI runs this file with policies/ on sys.path; the checks also import `vllm_stack`
# (defaults, flag table, catalogs), which lives in the repo root, the parent of this directory.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from vllm_policy.pack import build_policies  # noqa: E402

PolicyPack(name="vllm-stack-policies", policies=build_policies(), enforcement_level=EnforcementLevel.MANDATORY)
