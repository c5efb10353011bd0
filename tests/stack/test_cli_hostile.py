"""Every CLI path with hostile input: the exit code means one thing, stderr is one line, no traceback,
and nothing outside what the plan wrote is created, changed or removed.

Exit codes (vllm_stack/cli.py): 0 clean, 1 a mandatory policy failed (docs --check: stale docs),
2 bad input or usage, 3 internal error (a bug). Each case runs in its own temporary directory
seeded with sentinel files; the directory is snapshotted (paths, types, modes, contents) before
and after the run. `--out` never points into the real checkout: `--out .` runs inside a temporary
git repository, and refusing the checkout itself is checked on `check_out_dir`, which only reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from vllm_stack.loader import ConfigError
from vllm_stack.offline.plan import PLAN_FORMAT_VERSION, PLAN_GENERATOR, check_out_dir
from vllm_stack.stackfile import MAX_BYTES

from .conftest import ROOT

DEV = (ROOT / "Pulumi.dev.yaml").read_text()
PROD = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
USAGE_LINE = re.compile(r"^python -m vllm_stack( plan| docs)?: error: ")

# A stand-in for `python -m vllm_stack` that runs another Pulumi program (tests the CLI's handling
# of exceptions raised inside the program, which the real program only raises on bugs).
HARNESS = """\
import functools, sys
from pathlib import Path
import vllm_stack.offline.plan as plan
from vllm_stack.cli import main
plan.build_plan = functools.partial(plan.build_plan, program_dir=Path(sys.argv[1]))
raise SystemExit(main(sys.argv[2:]))
"""
PROGRAM_APPLY_RAISES = """\
import pulumi
import pulumi_random as random
from vllm_stack.render.{module} import {error}
password = random.RandomPassword("p", length=16)
def render(value):
    raise {error}({message!r})
rendered = password.result.apply(render)
random.RandomPassword("q", length=rendered.apply(lambda _: 16))   # pulumi re-wraps the error here
pulumi.export("rendered", rendered)
"""
PROGRAM_RAISES = """\
from vllm_stack.loader import ConfigError
raise ConfigError("models[0].name", "rejected by the program")
"""
PROGRAM_BUG = """\
import pulumi
import pulumi_random as random
password = random.RandomPassword("p", length=16)
random.RandomPassword("q", length=password.result.apply(lambda v: v.no_such_attribute))
"""


# --- cases -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[Path], list[str]]  # arguments after `python -m vllm_stack`, given the case dir
    code: int
    message: str = ""  # regex the one stderr line must match (after `error: `)
    setup: Callable[[Path], None] | None = None
    cwd: str = "."  # relative to the case dir
    env: dict = field(default_factory=dict)
    usage: bool = False  # argparse's usage + error line
    program: str | None = None  # run this Pulumi program through HARNESS
    out: str | None = "out"  # an --out that must not appear (None: no such check)


def write(d: Path, name: str, text: str | bytes) -> Path:
    p = d / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return p


def dev_with(**config) -> str:
    body = yaml.safe_load(DEV)
    body["config"].update({f"vllm-stack:{k}": v for k, v in config.items()})
    return yaml.safe_dump(body)


def prod_with_latest_image() -> str:
    body = json.loads(json.dumps(PROD))
    body["config"]["vllm-stack:models"][0]["image"] = "vllm/vllm-openai:latest"
    return yaml.safe_dump(body)


def stack(name: str, text: str | bytes) -> Callable[[Path], None]:
    return lambda d: write(d, name, text)


def previous_plan(d: Path, name: str = "prev") -> None:
    proc = run_cli(["plan", "dev", "--out", name], d)
    assert proc.returncode == 0, proc.stderr


def plan_json(d: Path, name: str, doc) -> None:
    write(d, name, doc if isinstance(doc, (str, bytes)) else json.dumps(doc))


def git_repo(d: Path) -> None:
    repo = d / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    write(repo, "README.md", "a repository the plan must not touch\n")
    write(repo, "src/code.py", "print('hi')\n")


def plain_dir_with_files(d: Path) -> None:
    write(d, "mine/notes.txt", "my notes\n")
    write(d, "mine/deep/more.txt", "more\n")


def symlink_to_dir(d: Path) -> None:
    (d / "real").mkdir()
    write(d, "real/file.txt", "x\n")
    (d / "link").symlink_to("real")


def prev_with_user_file(d: Path) -> None:
    previous_plan(d)
    write(d, "prev/notes.txt", "the user's notes\n")


def docs_copy(d: Path, readme: str | None = None, schema: str | None = None) -> None:
    """A throwaway checkout for `docs`: the package, README.md and docs/ (docs.py writes beside itself)."""
    shutil.copytree(ROOT / "vllm_stack", d / "repo/vllm_stack", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "docs", d / "repo/docs")
    shutil.copy(ROOT / "README.md", d / "repo/README.md")
    if readme is not None:
        write(d, "repo/README.md", readme)
    if schema is not None:
        write(d, "repo/docs/config.schema.json", schema)


def bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [
        f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
        f"*a{i - 1}, *a{i - 1}]"
        for i in range(1, 9)
    ]
    return "\n".join(lines) + "\nconfig:\n  vllm-stack:environment: *a8\n"


S = "Pulumi.s.yaml"
CASES: list[Case] = [
    # --- the stack file
    Case(
        "stack-not-utf8",
        lambda d: ["plan", S, "--out", "out"],
        2,
        r"Pulumi\.s\.yaml: not UTF-8 \(byte 0xff at line 3, column 5\)",
        stack(S, b"config:\n  vllm-stack:environment: dev\n  # \xff\n"),
    ),
    Case(
        "stack-duplicate-top-level-key",
        lambda d: ["plan", S, "--out", "out"],
        2,
        r"^config\.vllm-stack:platform: duplicate key at line 3, column 3 \(first at line 2, column 3\)",
        stack(S, "config:\n  vllm-stack:platform: docker\n  vllm-stack:platform: kubernetes\n"),
    ),
    Case(
        "stack-duplicate-nested-key",
        lambda d: ["plan", S, "--out", "out"],
        2,
        r"^config\.vllm-stack:hosts\[0\]\.address: duplicate key at line \d+",
        stack(S, DEV.replace("      address: 10.0.0.10\n", "      address: 10.0.0.10\n      address: 10.0.0.11\n")),
    ),
    Case(
        "stack-duplicate-config",
        lambda d: ["plan", S],
        2,
        r"^config: duplicate key",
        stack(S, DEV + "config: {}\n"),
        out=None,
    ),
    Case(
        "stack-non-string-key",
        lambda d: ["plan", S, "--out", "out"],
        2,
        r"^config\.vllm-stack:front\.true: mapping key at line \d+, column \d+ is not a string \(bool\); quote it",
        stack(S, dev_with(front={True: "x"})),
    ),
    # YAML 1.2 (as the Pulumi CLI reads it): `on` is the string "on", an unknown key here.
    Case(
        "stack-yaml11-on-key",
        lambda d: ["plan", S],
        2,
        r"^front\.on: unknown key; allowed: domain",
        stack(S, DEV.replace("  vllm-stack:front:\n", "  vllm-stack:front:\n    on: 1\n")),
        out=None,
    ),
    Case(
        "stack-too-big",
        lambda d: ["plan", S, "--out", "out"],
        2,
        rf"larger than {MAX_BYTES // 1024} KiB",
        stack(S, DEV + "#" * (MAX_BYTES + 1) + "\n"),
    ),
    Case("stack-alias-bomb", lambda d: ["plan", S, "--out", "out"], 2, r"too many YAML nodes", stack(S, bomb())),
    Case(
        "stack-deep-nesting",
        lambda d: ["plan", S, "--out", "out"],
        2,
        r"nested more than \d+ levels deep",
        stack(S, "config:\n  vllm-stack:x: " + "[" * 200 + "]" * 200 + "\n"),
    ),
    Case(
        "stack-very-deep-nesting",
        lambda d: ["plan", S],
        2,
        r"malformed YAML|nested",
        stack(S, "config:\n  vllm-stack:x: " + "[" * 100_000 + "]" * 100_000 + "\n"),
        out=None,
    ),
    Case(
        "stack-nul-byte",
        lambda d: ["plan", S],
        2,
        r"malformed YAML: unacceptable character #x0000",
        stack(S, "config:\n  vllm-stack:environment: \x00\n"),
        out=None,
    ),
    Case(
        "stack-python-tag",
        lambda d: ["plan", S, "--out", "out"],
        2,
        r"malformed YAML at line 2",
        stack(S, "config:\n  vllm-stack:environment: !!python/object/apply:os.system ['touch pwned']\n"),
    ),
    Case(
        "stack-malformed",
        lambda d: ["plan", S],
        2,
        r"malformed YAML at line 3",
        stack(S, "config:\n  vllm-stack:environment: dev\n   bad: [\n"),
        out=None,
    ),
    Case(
        "stack-two-documents",
        lambda d: ["plan", S],
        2,
        r"malformed YAML.*another document",
        stack(S, DEV + "---\n" + DEV),
        out=None,
    ),
    Case(
        "stack-empty",
        lambda d: ["plan", S, "--out", "out"],
        2,
        r"^config: the stack file needs a top-level",
        stack(S, ""),
    ),
    Case(
        "stack-list",
        lambda d: ["plan", S],
        2,
        r"^config: the stack file needs a top-level",
        stack(S, "- 1\n"),
        out=None,
    ),
    Case("stack-config-not-mapping", lambda d: ["plan", S], 2, r"^config: ", stack(S, "config: [1]\n"), out=None),
    Case(
        "stack-bad-value",
        lambda d: ["plan", S, "--out", "out"],
        2,
        r"^models\[0\]\.gpu: ",
        stack(S, DEV.replace("      gpu: L40S\n      tensorParallel", "      gpu: H1000\n      tensorParallel")),
    ),
    Case("stack-missing", lambda d: ["plan", "nope/Pulumi.x.yaml", "--out", "out"], 2, r"no stack file"),
    Case(
        "stack-unknown-name",
        lambda d: ["plan", "nosuchstack"],
        2,
        r"Pulumi\.nosuchstack\.yaml: no stack file",
        out=None,
    ),
    Case("stack-empty-arg", lambda d: ["plan", ""], 2, r"no stack file", out=None),
    Case(
        "stack-is-directory",
        lambda d: ["plan", "adir.yaml", "--out", "out"],
        2,
        r"adir\.yaml: cannot read stack file: Is a directory",
        lambda d: (d / "adir.yaml").mkdir(),
    ),
    Case("stack-dev-zero", lambda d: ["plan", "/dev/zero"], 2, r"larger than", out=None),
    Case(
        "stack-markup-in-name",
        lambda d: ["plan", "Pulumi.[bold]x[red].yaml", "--out", "out"],
        2,
        r"Pulumi\.\[bold\]x\[red\]\.yaml: stack name '\[bold\]x\[red\]'",
        stack("Pulumi.[bold]x[red].yaml", DEV),
    ),
    Case(
        "stack-markup-in-dir-bad-value",
        lambda d: ["plan", "[/]/Pulumi.s.yaml", "--out", "[bold]out"],
        2,
        r"^models\[0\]\.gpu: ",
        stack("[/]/Pulumi.s.yaml", DEV.replace("gpu: L40S\n      tensorParallel", "gpu: X\n      tensorParallel")),
        out="[bold]out",
    ),
    # --- --out
    Case("out-empty", lambda d: ["plan", "dev", "--out", ""], 2, r"^--out: is empty"),
    Case(
        "out-dot-in-git-repo",
        lambda d: ["plan", "dev", "--out", "."],
        2,
        r"^--out: \. is the current directory",
        git_repo,
        cwd="repo",
    ),
    Case(
        "out-dot-slash",
        lambda d: ["plan", "dev", "--out", "./"],
        2,
        r"^--out: \./ is the current directory",
        git_repo,
        cwd="repo",
    ),
    Case(
        "out-parent",
        lambda d: ["plan", "dev", "--out", ".."],
        2,
        r"^--out: \.\. is an ancestor of the current",
        git_repo,
        cwd="repo/src",
    ),
    Case(
        "out-repository-root",
        lambda d: ["plan", "dev", "--out", "repo"],
        2,
        r"^--out: repo is a repository root \(it has \.git\)",
        git_repo,
    ),
    Case(
        "out-inside-dot-git",
        lambda d: ["plan", "dev", "--out", "repo/.git/plan"],
        2,
        r"^--out: repo/\.git/plan is inside a \.git directory",
        git_repo,
    ),
    Case(
        "out-home",
        lambda d: ["plan", "dev", "--out", str(d / "home")],
        2,
        r"is the home directory",
        lambda d: write(d, "home/.bashrc", "# mine\n"),
        env={"HOME": "{d}/home"},
    ),
    Case(
        "out-ancestor-of-home",
        lambda d: ["plan", "dev", "--out", str(d)],
        2,
        r"is an ancestor of the (home|current) directory",
        lambda d: write(d, "home/.bashrc", "# mine\n"),
        cwd="home",
        env={"HOME": "{d}/home"},
    ),
    Case("out-root", lambda d: ["plan", "dev", "--out", "/"], 2, r"^--out: / is the filesystem root"),
    Case("out-tilde", lambda d: ["plan", "dev", "--out", "~"], 2, r"'~' is not expanded"),
    Case(
        "out-regular-file",
        lambda d: ["plan", "dev", "--out", "somefile"],
        2,
        r"^--out: somefile exists and is not a directory",
        lambda d: write(d, "somefile", "precious\n"),
    ),
    Case(
        "out-under-regular-file",
        lambda d: ["plan", "dev", "--out", "somefile/x"],
        2,
        r"^--out: somefile/x: .*somefile is not a directory",
        lambda d: write(d, "somefile", "precious\n"),
    ),
    Case(
        "out-non-empty-directory",
        lambda d: ["plan", "dev", "--out", "mine"],
        2,
        r"^--out: .*mine exists and is not a previous plan's output",
        plain_dir_with_files,
    ),
    Case(
        "out-previous-plan-with-user-file",
        lambda d: ["plan", "dev", "--out", "prev"],
        2,
        r"^--out: .*prev holds 1 file\(s\) the previous plan did not write \(notes\.txt\)",
        prev_with_user_file,
    ),
    Case(
        "out-forged-marker",
        lambda d: ["plan", "dev", "--out", "mine"],
        2,
        r"not a previous plan's output",
        lambda d: (plain_dir_with_files(d), plan_json(d, "mine/plan.json", {"generator": "someone else"})),
    ),
    Case(
        "out-symlink", lambda d: ["plan", "dev", "--out", "link"], 2, r"^--out: link is a symbolic link", symlink_to_dir
    ),
    Case(
        "out-proc",
        lambda d: ["plan", "dev", "--out", "/proc/vllm-stack-hostile/x"],
        2,
        r"^--out: /proc/vllm-stack-hostile/x: ",
        out=None,
    ),
    Case("out-with-bad-stack", lambda d: ["plan", S, "--out", "out"], 2, r"not UTF-8", stack(S, b"\xfe\xff")),
    # --- --diff (always with --out: a failing --diff writes nothing)
    Case(
        "diff-not-json",
        lambda d: ["plan", "dev", "--diff", "prev.json", "--out", "out"],
        2,
        r"^--diff: prev\.json: not JSON \(Expecting",
        lambda d: plan_json(d, "prev.json", "{"),
    ),
    Case(
        "diff-json-list",
        lambda d: ["plan", "dev", "--diff", "prev.json", "--out", "out"],
        2,
        r"^--diff: prev\.json: top level: expected a JSON object",
        lambda d: plan_json(d, "prev.json", []),
    ),
    Case(
        "diff-json-no-resources",
        lambda d: ["plan", "dev", "--diff", "prev.json", "--out", "out"],
        2,
        r"^--diff: prev\.json: resources: required key is missing",
        lambda d: plan_json(d, "prev.json", {"stack": "x", "violations": [], "capacity": {}}),
    ),
    Case(
        "diff-json-bad-resource",
        lambda d: ["plan", "dev", "--diff", "prev.json", "--out", "out"],
        2,
        r"^--diff: prev\.json: resources\[0\]\.type: expected a string",
        lambda d: plan_json(
            d,
            "prev.json",
            {
                "stack": "x",
                "resources": [{"name": "a", "inputs": {}}],
                "violations": [],
                "capacity": {"total": {"blendMonthly": 1}},
            },
        ),
    ),
    Case(
        "diff-json-nan-cost",
        lambda d: ["plan", "dev", "--diff", "prev.json", "--out", "out"],
        2,
        r"^--diff: prev\.json: capacity\.total\.blendMonthly: expected a finite number",
        lambda d: plan_json(
            d,
            "prev.json",
            '{"stack": "x", "resources": [], "violations": [], "capacity": {"total": {"blendMonthly": NaN}}}',
        ),
    ),
    Case(
        "diff-json-huge-int",
        lambda d: ["plan", "dev", "--diff", "prev.json", "--out", "out"],
        2,
        r"^--diff: prev\.json: not a plan document",
        lambda d: plan_json(d, "prev.json", '{"stack": ' + "9" * 5000 + "}"),
    ),
    Case(
        "diff-json-not-utf8",
        lambda d: ["plan", "dev", "--diff", "prev.json", "--out", "out"],
        2,
        r"^--diff: prev\.json: not UTF-8",
        lambda d: plan_json(d, "prev.json", b'{"stack": "\xff"}'),
    ),
    Case(
        "diff-json-missing",
        lambda d: ["plan", "dev", "--diff", "missing.json", "--out", "out"],
        2,
        r"^--diff: missing\.json: cannot read: No such file",
    ),
    Case(
        "diff-json-directory",
        lambda d: ["plan", "dev", "--diff", "d.json", "--out", "out"],
        2,
        r"^--diff: d\.json: cannot read: Is a directory",
        lambda d: (d / "d.json").mkdir(),
    ),
    Case(
        "diff-stack-missing",
        lambda d: ["plan", "dev", "--diff", "nosuchstack", "--out", "out"],
        2,
        r"^--diff: no stack file .*Pulumi\.nosuchstack\.yaml",
    ),
    Case(
        "diff-stack-fails",
        lambda d: ["plan", "dev", "--diff", S, "--out", "out"],
        2,
        r"^--diff: .*Pulumi\.s\.yaml: not UTF-8",
        stack(S, b"config: \xff\n"),
    ),
    Case(
        "diff-stack-duplicate-key",
        lambda d: ["plan", "dev", "--diff", S, "--out", "out"],
        2,
        r"^--diff: config\.vllm-stack:platform: duplicate key",
        stack(S, "config:\n  vllm-stack:platform: docker\n  vllm-stack:platform: kubernetes\n"),
    ),
    Case("diff-empty", lambda d: ["plan", "dev", "--diff", "", "--out", "out"], 2, r"^--diff: is empty"),
    Case(
        "diff-markup-path",
        lambda d: ["plan", "dev", "--diff", "[bold]p[/].json", "--out", "out"],
        2,
        r"^--diff: \[bold\]p\[/\]\.json: not JSON",
        lambda d: plan_json(d, "[bold]p[/].json", "nope"),
    ),
    # --- a mandatory policy fails: exit 1, the plan is printed, nothing is written or replaced
    Case(
        "policy-fails-nothing-written",
        lambda d: ["plan", S, "--out", "out"],
        1,
        r"^mandatory policy failed: pinned-images: .*; nothing written to --out",
        stack(S, prod_with_latest_image()),
    ),
    Case(
        "policy-fails-previous-plan-kept",
        lambda d: ["plan", S, "--out", "prev"],
        1,
        r"^mandatory policy failed: pinned-images: ",
        lambda d: (previous_plan(d), stack(S, prod_with_latest_image())(d)),
        out=None,
    ),
    # --- errors raised inside the Pulumi program
    Case(
        "program-front-render-error",
        lambda d: ["plan", "dev", "--out", "out"],
        2,
        r"^front\.domain 'a b' is not a valid host name$",
        program=PROGRAM_APPLY_RAISES.format(
            module="nginx", error="FrontRenderError", message="front.domain 'a b' is not a valid host name"
        ),
    ),
    Case(
        "program-render-error",
        lambda d: ["plan", "dev", "--out", "out"],
        2,
        r"^models\[x\]\.extraArgs: bad$",
        program=PROGRAM_APPLY_RAISES.format(
            module="vllm_args", error="RenderError", message="models[x].extraArgs: bad"
        ),
    ),
    Case(
        "program-k8s-render-error",
        lambda d: ["plan", "dev", "--out", "out"],
        2,
        r"^Secret s: key",
        program=PROGRAM_APPLY_RAISES.format(
            module="k8s_common", error="K8sRenderError", message="Secret s: key '../x' is not a valid Secret key"
        ),
    ),
    Case(
        "program-config-error",
        lambda d: ["plan", "dev", "--out", "out"],
        2,
        r"^models\[0\]\.name: rejected by the program$",
        program=PROGRAM_RAISES,
    ),
    Case(
        "program-bug",
        lambda d: ["plan", "dev", "--out", "out"],
        3,
        r"^internal error: AttributeError: .*no_such_attribute.* \(set VLLM_STACK_DEBUG=1 for the traceback\)$",
        program=PROGRAM_BUG,
    ),
    # --- usage errors (argparse: usage line + error line)
    Case("usage-no-command", lambda d: [], 2, usage=True),
    Case("usage-unknown-command", lambda d: ["apply"], 2, usage=True),
    Case("usage-plan-no-stack", lambda d: ["plan"], 2, usage=True),
    Case("usage-unknown-option", lambda d: ["plan", "dev", "--bogus"], 2, usage=True),
    Case("usage-out-without-value", lambda d: ["plan", "dev", "--out"], 2, usage=True),
    Case("usage-diff-without-value", lambda d: ["plan", "dev", "--diff"], 2, usage=True),
    Case("usage-docs-extra-argument", lambda d: ["docs", "extra"], 2, usage=True),
    Case("usage-docs-unknown-option", lambda d: ["docs", "--out", "x"], 2, usage=True, out="x"),
    # --- docs (in a throwaway copy of the package: docs.py writes README.md and docs/ beside itself)
    Case(
        "docs-check-stale-schema",
        lambda d: ["docs", "--check"],
        1,
        r"^out of date: (README\.md config reference, )?docs/config\.schema\.json; run `python -m vllm_stack docs`$",
        lambda d: docs_copy(d, schema="{}\n"),
        cwd="repo",
        env={"PYTHONPATH": ""},
    ),
    Case(
        "docs-check-readme-without-markers",
        lambda d: ["docs", "--check"],
        2,
        r"README\.md lacks the",
        lambda d: docs_copy(d, readme="# no markers\n"),
        cwd="repo",
        env={"PYTHONPATH": ""},
    ),
    Case(
        "docs-readme-without-markers",
        lambda d: ["docs"],
        2,
        r"README\.md lacks the",
        lambda d: docs_copy(d, readme="# no markers\n", schema="{}\n"),
        cwd="repo",
        env={"PYTHONPATH": ""},
    ),
]


# --- running ---------------------------------------------------------------------------------------


def run_cli(
    args: list[str], cwd: Path, env: dict | None = None, program: Path | None = None, timeout: int = 180
) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "VLLM_STACK_DEBUG"}
    full_env.update({"PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1", **(env or {})})
    cmd = [sys.executable, str(cwd / "harness.py"), str(program)] if program else [sys.executable, "-m", "vllm_stack"]
    return subprocess.run(
        [*cmd, *args],
        check=False,
        capture_output=True,
        cwd=cwd,
        env=full_env,
        timeout=timeout,
        encoding="utf-8",
        errors="backslashreplace",
    )


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root: type, mode and content hash (or link target); symlinks are not followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            st = p.lstat()
            if p.is_symlink():
                out[str(p.relative_to(root))] = ("link", os.readlink(p))
            elif p.is_dir():
                out[str(p.relative_to(root))] = ("dir", st.st_mode)
            else:
                out[str(p.relative_to(root))] = ("file", st.st_mode, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


@dataclass
class Outcome:
    proc: subprocess.CompletedProcess
    before: dict
    after: dict
    dir: Path


def _run_case(case: Case, d: Path) -> Outcome:
    write(d, "sentinel.txt", "must survive\n")
    write(d, "keep/inner.txt", "must survive too\n")
    if case.setup:
        case.setup(d)
    program = None
    if case.program:
        write(d, "harness.py", HARNESS)
        program = write(d, "prog/__main__.py", case.program).parent
    env = {k: v.replace("{d}", str(d)) for k, v in case.env.items()}
    before = snapshot(d)
    proc = run_cli(case.argv(d), d / case.cwd, env, program)
    return Outcome(proc, before, snapshot(d), d)


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory) -> dict[str, Outcome]:
    """The selected cases at once, in parallel (each is a subprocess; most fail in under a second)."""
    selected = {
        item.callspec.params["case"].id
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_hostile_input" and hasattr(item, "callspec")
    }
    cases = [c for c in CASES if c.id in selected]
    dirs = {c.id: tmp_path_factory.mktemp(c.id[:40]) for c in cases}
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(dirs, pool.map(lambda c: _run_case(c, dirs[c.id]), cases)))


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_input(case: Case, outcomes):
    o = outcomes[case.id]
    proc = o.proc
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == case.code, proc.stderr
    lines = proc.stderr.splitlines()
    if case.usage:
        assert lines[0].startswith("usage: python -m vllm_stack"), proc.stderr
        assert USAGE_LINE.match(lines[-1]), proc.stderr
    else:
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        assert re.search(case.message, lines[0].removeprefix("error: ")), (case.message, lines[0])
    if case.code == 1 and case.argv(o.dir)[0] == "plan":
        assert "Policy violations" in proc.stdout and "written to" not in proc.stdout
    else:
        assert proc.stdout == "", proc.stdout[-500:]  # an error prints nothing on stdout
    assert o.after == o.before, sorted(set(o.after.items()) ^ set(o.before.items()))  # nothing written or removed
    if case.out is not None:
        assert not os.path.lexists(o.dir / case.cwd / case.out)
    assert (ROOT / ".git").exists() and (ROOT / "vllm_stack" / "cli.py").exists()


def test_program_bug_with_debug_prints_the_traceback(tmp_path):
    write(tmp_path, "harness.py", HARNESS)
    prog = write(tmp_path, "prog/__main__.py", PROGRAM_BUG).parent
    proc = run_cli(["plan", "dev", "--out", "out"], tmp_path, {"VLLM_STACK_DEBUG": "1"}, prog)
    assert proc.returncode == 3
    assert "Traceback (most recent call last)" in proc.stderr and "no_such_attribute" in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("error: internal error: AttributeError: ")
    assert "VLLM_STACK_DEBUG=1 for" not in proc.stderr
    assert not (tmp_path / "out").exists()


# --- what must still work with hostile-looking (but valid) input --------------------------------


def test_markup_and_undecodable_bytes_in_paths_are_printed_as_text(tmp_path):
    d = tmp_path / "[bold]x[/]"
    write(d, "Pulumi.dev.yaml", DEV)
    out = os.fsdecode(os.fsencode(str(tmp_path)) + b"/[/]out-\xff")
    proc = run_cli(["plan", str(d / "Pulumi.dev.yaml"), "--out", out], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "files written to" in proc.stdout and "[/]out-\\xff" in proc.stdout
    assert json.loads((Path(out) / "plan.json").read_text())["generator"] == PLAN_GENERATOR
    prev = write(tmp_path, "[red]prev.json", (Path(out) / "plan.json").read_bytes())
    proc = run_cli(["plan", "dev", "--diff", str(prev)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "plan diff dev → dev" in proc.stdout and "delta $+0.00" in proc.stdout


def test_empty_directory_is_filled_and_nothing_else_is_touched(tmp_path):
    (tmp_path / "empty").mkdir()
    write(tmp_path, "sentinel.txt", "x\n")
    proc = run_cli(["plan", "dev", "--out", "empty"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "empty/plan.json").read_text())
    assert doc["generator"] == PLAN_GENERATOR and doc["formatVersion"] == PLAN_FORMAT_VERSION
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "sentinel.txt"]


def test_previous_plan_is_replaced_and_only_its_files_are_removed(tmp_path):
    assert run_cli(["plan", "prod", "--out", "o"], tmp_path).returncode == 0
    prod_files = {p.relative_to(tmp_path / "o").as_posix() for p in (tmp_path / "o").rglob("*") if p.is_file()}
    assert "k8s/secret-vllm-model-secrets.yaml" in prod_files
    write(tmp_path, "o-sibling/mine.txt", "a sibling with the same prefix\n")
    proc = run_cli(["plan", "dev", "--out", "o"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "o/plan.json").read_text())
    dev_files = {p.relative_to(tmp_path / "o").as_posix() for p in (tmp_path / "o").rglob("*") if p.is_file()}
    assert dev_files == {*doc["artifacts"], "plan.json"} and not (tmp_path / "o/k8s").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "o-sibling"]  # no temp or aside dirs left
    assert (tmp_path / "o-sibling/mine.txt").read_text() == "a sibling with the same prefix\n"


@pytest.mark.parametrize(
    "raw, message",
    [
        (str(ROOT), "holds the vllm-stack program"),
        (str(ROOT.parent), "holds the vllm-stack program"),
        (str(ROOT / "vllm_stack"), "is not a previous plan's output"),
        (str(ROOT / ".git" / "x"), "inside a .git directory"),
    ],
)
def test_check_out_dir_refuses_the_checkout_without_touching_it(raw, message, tmp_path):
    """`check_out_dir` only reads; the real checkout is never passed to a running plan."""
    with pytest.raises(ConfigError) as exc:
        check_out_dir(raw, cwd=str(tmp_path))
    assert exc.value.path == "--out" and message in exc.value.message


def test_check_out_dir_accepts_new_empty_and_previous_plan(tmp_path):
    assert check_out_dir("a/b", cwd=str(tmp_path)).state == "new"
    (tmp_path / "e").mkdir()
    assert check_out_dir("e", cwd=str(tmp_path)).state == "empty"
    write(
        tmp_path,
        "p/plan.json",
        json.dumps({"generator": PLAN_GENERATOR, "formatVersion": 1, "artifacts": ["x/y.conf"]}),
    )
    write(tmp_path, "p/x/y.conf", "y\n")
    checked = check_out_dir("p", cwd=str(tmp_path))
    assert checked.state == "plan" and checked.previous == {"plan.json", "x/y.conf"}
    write(tmp_path, "p/x/z.conf", "z\n")
    with pytest.raises(ConfigError, match=r"holds 1 file\(s\) the previous plan did not write \(x/z\.conf\)"):
        check_out_dir("p", cwd=str(tmp_path))


def test_marker_listing_unsafe_paths_is_not_a_marker(tmp_path):
    write(
        tmp_path,
        "p/plan.json",
        json.dumps({"generator": PLAN_GENERATOR, "formatVersion": 1, "artifacts": ["../outside.txt"]}),
    )
    with pytest.raises(ConfigError, match="is not a previous plan's output"):
        check_out_dir("p", cwd=str(tmp_path))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_out_in_read_only_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    proc = run_cli(["plan", "dev", "--out", "ro/out"], tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --out: ro/out: ")
    assert len(proc.stderr.splitlines()) == 1 and not (ro / "out").exists()


def test_broken_stdout_pipe_is_one_line(tmp_path):
    p = subprocess.Popen(
        [sys.executable, "-m", "vllm_stack", "plan", "dev"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    p.stdout.close()  # the reader goes away before the plan prints
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 2
    assert err.splitlines() == ["error: stdout: broken pipe"]


def test_docs_write_then_check_in_a_copy(tmp_path):
    docs_copy(tmp_path, schema="{}\n")
    env = {"PYTHONPATH": ""}
    assert run_cli(["docs"], tmp_path / "repo", env).returncode == 0
    assert json.loads((tmp_path / "repo/docs/config.schema.json").read_text())["title"] == "StackConfig"
    proc = run_cli(["docs", "--check"], tmp_path / "repo", env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


# --- write_artifacts in-process: the swap, its fallback, and failure half-way ---------------------


def _fake_plan(files: dict[str, str]):
    from types import SimpleNamespace

    from vllm_stack.components.artifacts import Artifact

    arts = {rel: Artifact(rel, text) for rel, text in files.items()}
    return SimpleNamespace(
        artifacts=arts, document={"generator": PLAN_GENERATOR, "formatVersion": 1, "artifacts": sorted(arts)}
    )


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_write_artifacts_swaps_and_removes_only_the_previous_files(tmp_path, monkeypatch, exchange):
    from vllm_stack.offline import plan as plan_mod

    if not exchange:
        monkeypatch.setattr(plan_mod, "_exchange", lambda a, b: False)
    plan_mod.write_artifacts(
        _fake_plan({"a/old.txt": "old", "b/c/old.txt": "old"}), check_out_dir("o", cwd=str(tmp_path))
    )
    plan_mod.write_artifacts(_fake_plan({"a/new.txt": "new"}), check_out_dir("o", cwd=str(tmp_path)))
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert files == ["o", "o/a", "o/a/new.txt", "o/plan.json"]
    assert (tmp_path / "o/a/new.txt").read_text() == "new"


def test_write_artifacts_failing_half_way_leaves_nothing(tmp_path, monkeypatch):
    from vllm_stack.offline import plan as plan_mod

    out = check_out_dir("new/parent/o", cwd=str(tmp_path))
    real_chmod, calls = os.chmod, []

    def chmod(path, mode, *a, **kw):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(path))
        return real_chmod(path, mode, *a, **kw)

    monkeypatch.setattr(os, "chmod", chmod)
    with pytest.raises(OSError):
        plan_mod.write_artifacts(_fake_plan({"a/1.txt": "1", "a/2.txt": "2", "b/3.txt": "3"}), out)
    assert list(tmp_path.iterdir()) == []  # no temp dir, no created parents


def test_write_artifacts_refuses_an_unsafe_artifact_path(tmp_path):
    from vllm_stack.offline import plan as plan_mod

    with pytest.raises(RuntimeError, match="unsafe path"):
        plan_mod.write_artifacts(_fake_plan({"../escape.txt": "x"}), check_out_dir("o", cwd=str(tmp_path)))
    assert list(tmp_path.iterdir()) == []
