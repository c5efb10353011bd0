"""The offline plan: config → program under mocks → policies → artifacts → summary.

`python -m vllm_stack plan dev` is what a reviewer runs before `pulumi up`: it needs no
CLI, no cloud and no decrypted secrets. Secrets are `[secret]` placeholders end to end.

`--out DIR` (see `check_out_dir` / `write_artifacts`) never removes or moves anything the
plan did not write: DIR must be new, an empty directory, or a previous plan's output
(its `plan.json` carries `generator: "vllm-stack plan"` and lists every file it wrote).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import secrets as _secrets
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ..capacity import stack_projection
from ..catalog import lookup_model
from ..config import StackConfig
from ..loader import ConfigError, display_text, parse_config, split_namespaced
from ..stackfile import read_stack_document

if TYPE_CHECKING:  # the engine imports pulumi: only when a plan runs (bad input fails fast)
    from .engine import ProgramRun, RecordedResource

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The signature of plan.json (and of `--json` output): what makes a directory a previous plan's output.
PLAN_GENERATOR = "vllm-stack plan"
PLAN_FORMAT_VERSION = 1
PLAN_JSON = "plan.json"
#: Pulumi's stack-name alphabet; the name comes from the file name (`Pulumi.<stack>.yaml`).
STACK_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


@dataclass
class PlanResult:
    stack: str
    cfg: StackConfig
    run: ProgramRun
    violations: list[dict[str, Any]]
    warnings: list[str]
    artifacts: dict[str, Any]  # path -> Artifact
    projection: dict[str, Any]
    document: dict[str, Any] = field(default_factory=dict)

    @property
    def mandatory_failures(self) -> list[dict[str, Any]]:
        return [v for v in self.violations if v["enforcement"] == "mandatory"]


def _scrub(value: Any) -> Any:
    """JSON-able copy of a resource input; unknowns are shown, never guessed."""
    from pulumi.runtime import rpc

    from .engine import SECRET_PLACEHOLDER

    if value is rpc.UNKNOWN or (isinstance(value, str) and value == rpc.UNKNOWN):
        return "[unknown]"
    if rpc.is_rpc_secret(value):
        return SECRET_PLACEHOLDER
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def public_inputs(r: RecordedResource) -> dict[str, Any]:
    from .engine import SECRET_PLACEHOLDER

    return {k: (SECRET_PLACEHOLDER if k in r.secret_keys else _scrub(v)) for k, v in sorted(r.inputs.items())}


def needed_secrets(cfg: StackConfig) -> list[tuple[str, str]]:
    """Secrets `pulumi up` cannot do without, with the reason (generated ones are not listed)."""
    needed = []
    if cfg.platform == "docker":
        needed.append(("sshPrivateKey", "SSH to the hosts"))
    if any((lookup_model(m.model) or m.model_info()).gated for m in cfg.models if m.architecture is None):
        needed.append(("hfToken", "downloading gated models"))
    if cfg.front.tls == "provided":
        needed += [("tlsCertificate", "front.tls=provided"), ("tlsPrivateKey", "front.tls=provided")]
    from ..render.alertmanager import needed_secrets as alert_secrets

    needed += [(key, "an alert receiver (monitoring.alertmanager.receivers)") for key in alert_secrets(cfg)]
    return needed


def secret_warnings(cfg: StackConfig) -> list[str]:
    from .engine import SECRET_PLACEHOLDER

    out = []
    for key, why in needed_secrets(cfg):
        if key not in cfg.secrets:
            out.append(
                f"secret `{key}` is not set; `pulumi up` will need it ({why}): pulumi config set --secret {key} ..."
            )
    if cfg.secrets:
        out.append(
            f"{len(cfg.secrets)} secret value(s) not decrypted offline ({', '.join(sorted(cfg.secrets))}); "
            f"the plan uses `{SECRET_PLACEHOLDER}` placeholders"
        )
    return out


def stack_name(stack_path: Path) -> str:
    stack = stack_path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    if not STACK_NAME.fullmatch(stack):
        raise ConfigError(
            _shown(stack_path),
            f"stack name '{_shown(stack)}' (from the file name Pulumi.<stack>.yaml) "
            "may only contain letters, digits, '-', '_' and '.' (Pulumi's rule)",
        )
    return stack


def build_plan(stack_path: Path, program_dir: Path = REPO_ROOT) -> PlanResult:
    from vllm_stack.components import artifacts as sink  # the program's sink, in this process

    from .policy_runner import run_policies
    from .engine import VALUE_PLACEHOLDER, run_program

    stack = stack_name(stack_path)
    doc = read_stack_document(stack_path)  # one strict read: size, UTF-8, duplicate keys
    plain, secrets = split_namespaced(doc["config"], stack_path.name)
    cfg = parse_config(plain, secrets, stack_path.name)
    # Secrets that are set or needed get placeholders: the plan goes on, and warns below.
    placeholders = {k: VALUE_PLACEHOLDER for k in [*secrets, *(k for k, _ in needed_secrets(cfg))]}
    sink.reset()
    run = run_program(program_dir, stack, plain, placeholders)
    violations = run_policies(run.resources, cfg)
    projection = stack_projection(cfg)
    result = PlanResult(
        stack=stack,
        cfg=cfg,
        run=run,
        violations=violations,
        warnings=secret_warnings(cfg),
        artifacts=sink.collected(),
        projection=projection,
    )
    result.document = plan_document(result)
    return result


def plan_document(p: PlanResult) -> dict[str, Any]:
    from .engine import SECRET_PLACEHOLDER

    outputs = {
        k: (SECRET_PLACEHOLDER if k in p.run.secret_outputs else _scrub(v)) for k, v in sorted(p.run.outputs.items())
    }
    return {
        "generator": PLAN_GENERATOR,
        "formatVersion": PLAN_FORMAT_VERSION,
        "stack": p.stack,
        "environment": p.cfg.environment,
        "platform": p.cfg.platform,
        "resources": [
            {
                "urn": r.urn,
                "type": r.type,
                "name": r.name,
                "parent": r.parent,
                "inputs": public_inputs(r),
                "secretInputs": sorted(r.secret_keys),
                "dependencies": sorted(r.dependencies),
            }
            for r in p.run.resources
        ],
        "violations": p.violations,
        "warnings": p.warnings,
        "capacity": p.projection,
        "artifacts": sorted(p.artifacts),
        "outputs": outputs,
    }


# --- --out: refuse anything the plan did not write; swap atomically -------------------------------

MAX_PLAN_JSON_BYTES = 64 << 20


def _out_error(message: str) -> ConfigError:
    return ConfigError("--out", message)


_shown = display_text


@dataclass(frozen=True)
class OutDir:
    """A checked `--out` target: `state` is "new", "empty" or "plan" (a previous plan's output)."""

    path: Path
    state: str
    previous: frozenset[str] = frozenset()  # files of the previous plan (relative, incl. plan.json)


def read_plan_marker(path: Path) -> dict[str, Any] | None:
    """plan.json's document if it was written by `vllm-stack plan` (our signature), else None."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_PLAN_JSON_BYTES:
            return None
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("generator") != PLAN_GENERATOR:
        return None
    if not isinstance(doc.get("formatVersion"), int) or not isinstance(doc.get("artifacts"), list):
        return None
    if not all(isinstance(a, str) and _safe_relpath(a) for a in doc["artifacts"]):
        return None
    return doc


def _safe_relpath(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    return (
        bool(parts)
        and not rel.startswith("/")
        and "\\" not in rel
        and "\0" not in rel
        and all(part not in ("", ".", "..") for part in parts)
        and rel != PLAN_JSON
    )


def _previous_plan_files(target: Path) -> frozenset[str]:
    """The files a previous plan wrote into `target`, or an error naming what else is there."""
    doc = read_plan_marker(target / PLAN_JSON)
    if doc is None:
        raise _out_error(
            f"{_shown(target)} exists and is not a previous plan's output (no {PLAN_JSON} written by "
            f"`{PLAN_GENERATOR}`); choose a new or empty directory, or remove it yourself"
        )
    files = frozenset([*doc["artifacts"], PLAN_JSON])
    dirs = {str(parent) for f in files for parent in PurePosixPath(f).parents if str(parent) != "."}
    foreign: list[str] = []
    for root, dirnames, filenames in os.walk(target, onerror=_raise):
        for name in [*dirnames, *filenames]:
            full = Path(root) / name
            rel = full.relative_to(target).as_posix()
            mode = os.lstat(full).st_mode
            if stat.S_ISDIR(mode) and rel in dirs:
                continue
            if stat.S_ISREG(mode) and rel in files:
                continue
            foreign.append(rel + ("/" if stat.S_ISDIR(mode) else ""))
        dirnames[:] = [d for d in dirnames if f"{Path(root, d).relative_to(target).as_posix()}" in dirs]
    if foreign:
        shown = ", ".join(_shown(f) for f in sorted(foreign)[:5]) + (", ..." if len(foreign) > 5 else "")
        raise _out_error(
            f"{_shown(target)} holds {len(foreign)} file(s) the previous plan did not write ({shown}); "
            "move them away or choose another directory"
        )
    return files


def _raise(exc: OSError) -> None:
    raise exc


def check_out_dir(raw: str, cwd: str | None = None) -> OutDir:
    """Refuse an `--out` that could hold anything the plan did not write; nothing is touched here."""
    if raw == "":
        raise _out_error("is empty; give a directory for the plan output, e.g. out/dev")
    if raw == "~" or raw.startswith("~/"):
        raise _out_error(f"{_shown(raw)}: '~' is not expanded here; give the path your shell expands")
    try:
        here = Path(os.path.realpath(cwd or os.getcwd()))
        lexical = Path(os.path.abspath(os.path.join(here, raw)))
        target = Path(os.path.realpath(lexical.parent)) / lexical.name if lexical.name else lexical
        if target == Path(target.anchor):
            raise _out_error(f"{_shown(raw)} is the filesystem root")
        home = Path(os.path.realpath(os.path.expanduser("~")))
        for candidate in {lexical, target}:
            if candidate == here:
                raise _out_error(f"{_shown(raw)} is the current directory")
            if candidate in here.parents:
                raise _out_error(f"{_shown(raw)} is an ancestor of the current directory")
            if candidate == home or candidate in home.parents:
                raise _out_error(
                    f"{_shown(raw)} is the home directory"
                    if candidate == home
                    else f"{_shown(raw)} is an ancestor of the home directory"
                )
            if candidate == REPO_ROOT or candidate in REPO_ROOT.parents:
                raise _out_error(f"{_shown(raw)} holds the vllm-stack program ({_shown(REPO_ROOT)})")
            if ".git" in candidate.parts:
                raise _out_error(f"{_shown(raw)} is inside a .git directory")
        if os.path.islink(target):
            raise _out_error(f"{_shown(raw)} is a symbolic link; the plan does not replace links")
        if os.path.lexists(target / ".git"):
            raise _out_error(f"{_shown(raw)} is a repository root (it has .git)")
        if os.path.lexists(target):
            if not os.path.isdir(target):
                raise _out_error(f"{_shown(raw)} exists and is not a directory")
            if not os.listdir(target):
                return OutDir(target, "empty")
            return OutDir(target, "plan", _previous_plan_files(target))
        existing = target.parent
        while not os.path.lexists(existing):
            existing = existing.parent
        if not os.path.isdir(existing):
            raise _out_error(f"{_shown(raw)}: {_shown(existing)} is not a directory")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise _out_error(f"{_shown(raw)}: cannot create directories in {_shown(existing)} (permission denied)")
        return OutDir(target, "new")
    except OSError as exc:
        raise _out_error(f"{_shown(raw)}: {exc.strerror or exc}") from None


def _remove_files(root: Path, files: frozenset[str] | set[str]) -> bool:
    """Remove exactly `files` (relative) under `root`, then the directories they leave empty.

    Returns False if something else was left behind (root is kept then).
    """
    for rel in sorted(files):
        try:
            os.unlink(root / rel)
        except FileNotFoundError:
            pass
    dirs = sorted(
        {root / parent for f in files for parent in PurePosixPath(f).parents if str(parent) != "."},
        key=lambda d: len(d.parts),
        reverse=True,
    )
    for d in [*dirs, root]:
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False
            raise
    return True


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False if unsupported here."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), os.fsdecode(b))


def _swap_in(tmp: Path, target: Path) -> None:
    """Put tmp at target; the previous content ends up at tmp. Target is never half-written."""
    if _exchange(tmp, target):
        return
    aside = target.with_name(f".{target.name}.old-{_secrets.token_hex(4)}")
    os.rename(target, aside)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(aside, target)
        raise
    os.rename(aside, tmp)


def _make_parents(path: Path) -> list[Path]:
    created: list[Path] = []
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        path = path.parent
    for d in reversed(missing):
        os.mkdir(d)
        created.append(d)
    return created


def write_artifacts(p: PlanResult, out: OutDir) -> None:
    """All or nothing: write into a temp dir beside `out.path`, then swap it in.

    Replaces only what `check_out_dir` found: a new path, an empty directory, or a previous
    plan's output (re-checked just before the swap; only the files it listed are removed).
    """
    target = out.path
    bad = sorted(rel for rel in p.artifacts if not _safe_relpath(rel))
    if bad:
        raise RuntimeError(f"the program rendered an artifact with an unsafe path: {bad[0]!r}")
    ours = frozenset([*p.artifacts, PLAN_JSON])  # all a fresh temp dir can hold (its subdirs follow)
    created = _make_parents(target.parent)
    tmp: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        for rel, art in sorted(p.artifacts.items()):
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, art.mode)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(art.content)
            os.chmod(dest, art.mode)
        (tmp / PLAN_JSON).write_text(json.dumps(p.document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if out.state == "plan":
            if _previous_plan_files(target) != out.previous:
                raise _out_error(f"{_shown(target)} changed while the plan ran; run the plan again")
            _swap_in(tmp, target)
        else:
            os.rename(tmp, target)  # onto a new path or an empty directory: atomic
            tmp = None
    except BaseException:
        if tmp is not None:
            _remove_files(tmp, ours)
        for d in reversed(created):
            try:
                os.rmdir(d)
            except OSError:
                break
        raise
    if tmp is not None:  # tmp now holds the previous plan: remove exactly its files
        try:
            complete = _remove_files(tmp, out.previous)
        except OSError:
            complete = False
        if not complete:
            print(
                f"warning: --out: kept {_shown(tmp)} (the previous plan's files; something else appeared in it)",
                file=sys.stderr,
            )
