"""Policy rule `quantization-matches-checkpoint` (declared in checks.RULES).

id: quantization-matches-checkpoint
description: a vLLM workload's `--quantization` must be one its checkpoint can load, and should be the
  one vLLM would pick. vLLM refuses to start when the flag names a method the checkpoint does not carry
  ("Cannot find the config file for awq" on a 16-bit checkpoint; a pre-quantized checkpoint with a
  different flag: "does not match the quantization method specified", vllm/config/model.py
  `_verify_quantization`); an explicit AWQ/GPTQ flag on a checkpoint that carries it is redundant
  (vLLM reads the checkpoint's quantization_config and picks the Marlin-capable kernel itself; older
  releases forced the slow AWQ kernel on `--quantization awq`).
enforcement: a flag the checkpoint cannot load: mandatory in prod and dev (the server would not
  start); a redundant explicit flag: advisory in both.
thresholds: none. Models outside the catalog (inline architectures, local paths) are skipped: the
  rule cannot read their config.json. The allowed values are vllm_stack.semantics.allowed_quantizations
  (the same table the stack config is validated with); vLLM's own spellings (awq_marlin, auto_awq,
  gptq_marlin, auto_gptq) map to the stack's method with vllm_stack.sizing.METHOD_OF; other spellings
  are judged only on pre-quantized checkpoints (on a 16-bit one they may be online methods).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

from vllm_stack.catalog import lookup_model
from vllm_stack.semantics import allowed_quantizations
from vllm_stack.sizing import METHOD_OF

from . import shapes as S

POLICY_ID = "quantization-matches-checkpoint"
Report = Callable[..., None]


def quantization_matches_checkpoint(
    resource_type: str, props: Mapping, ctx: Any, report: Report, secret_keys: Any = None
) -> None:
    for argv in S.vllm_argvs(resource_type, props):
        model = S.model_of(argv.args)
        info = lookup_model(model) if model else None
        raw = S.last_value(argv.args, "--quantization")
        if info is None or raw is None:
            continue
        flag = raw.lower()
        method = METHOD_OF.get(flag)
        allowed = allowed_quantizations(info.id)
        ck = info.architecture.checkpoint
        if method is None and ck is None:
            continue  # an online method this rule does not know (fp8_per_tensor, torchao, ...): vLLM decides
        if method is None or method not in allowed:
            kind = f"a pre-quantized {ck.method.upper()} checkpoint" if ck else "a 16-bit checkpoint"
            report(
                f"{argv.where}: --quantization {raw} on {model}, {kind}: vLLM refuses to start "
                f"(the checkpoint does not carry {raw}); allowed: "
                + ", ".join("(no flag)" if a == "none" else a for a in allowed)
            )
        elif ck is not None and method in ("awq", "gptq"):
            report(
                f"{argv.where}: --quantization {raw} on the {ck.method.upper()} checkpoint {model}: leave the flag "
                f"out; vLLM reads the checkpoint's quantization_config and picks the Marlin kernel where the GPU "
                f"supports it (older releases force the slow kernel on an explicit `{ck.method}`)",
                advisory=True,
            )
