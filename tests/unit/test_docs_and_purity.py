"""The docs are generated from the code, and the core stays free of Pulumi."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_config_reference_and_schema_are_fresh():
    from vllm_stack.docs import check_docs
    assert check_docs() == []


def test_every_config_key_is_documented_in_readme():
    from vllm_stack.config import config_keys
    readme = (ROOT / "README.md").read_text()
    for key in config_keys():
        assert f"`{key}`" in readme, key


def test_core_modules_never_import_pulumi():
    offenders = []
    for path in (ROOT / "vllm_stack").rglob("*.py"):
        if "offline" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.split(".")[0].startswith("pulumi") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_importing_core_loads_no_pulumi_module():
    code = ("import sys, vllm_stack.loader, vllm_stack.capacity, vllm_stack.render.vllm_args; "
            "print(any(m.startswith('pulumi') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
