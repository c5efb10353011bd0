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


#: The Pulumi side of the package: the components, the stack's composition, and the offline engine
#: that runs it. Everything else is the pure core.
PULUMI_SIDE = ("vllm_stack/components/", "vllm_stack/stack.py", "vllm_stack/offline/")


def _imports(path: Path) -> list[str]:
    """Absolute module names a file imports (relative imports resolved against its package)."""
    pkg = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out += [base] + [f"{base}.{a.name}" for a in node.names]
    return out


def _core_files() -> list[Path]:
    return [p for p in (ROOT / "vllm_stack").rglob("*.py") if not str(p.relative_to(ROOT)).startswith(PULUMI_SIDE)]


def test_core_modules_never_import_pulumi():
    offenders = sorted(
        {
            str(p.relative_to(ROOT))
            for p in _core_files()
            if any(n.split(".")[0].startswith("pulumi") for n in _imports(p))
        }
    )
    assert offenders == []


def test_core_never_imports_the_components_the_program_or_the_policy_pack():
    """The seams run one way: components and policies read the core, never the reverse."""
    forbidden = ("vllm_stack.components", "vllm_stack.stack", "vllm_policy", "policies")
    offenders = sorted(
        {
            f"{p.relative_to(ROOT)}: {n}"
            for p in _core_files()
            for n in _imports(p)
            if n == forbidden[1] or n.startswith(tuple(f + "." for f in forbidden)) or n in forbidden
        }
    )
    assert offenders == []


def test_import_boundary_check_sees_a_violation(tmp_path):
    bad = ROOT / "vllm_stack" / "_boundary_probe.py"
    bad.write_text("from .components import host\nimport pulumi\n")
    try:
        assert "vllm_stack.components.host" in _imports(bad) and "pulumi" in _imports(bad)
        assert bad in _core_files()
    finally:
        bad.unlink()


def test_importing_core_loads_no_pulumi_module():
    code = (
        "import sys, vllm_stack.loader, vllm_stack.capacity, vllm_stack.render.vllm_args; "
        "print(any(m.startswith('pulumi') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
