"""Packaging: the hashed locks agree with the pins, and the project installs from a checkout and from a git tag.

requirements.lock and requirements-dev.lock (`make lock`) pin every package, transitive ones included, each
with the sha256 of its files; `make venv` installs the dev lock with `pip install --require-hashes`. The
lock checks here are pure text. The install tests run this venv's pip with --no-deps, no index and the
venv's own (locked) setuptools (--no-build-isolation --check-build-dependencies), so they need no network,
and then import the installed copy from a directory outside the tree with only that copy on PYTHONPATH.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TAG = "v0.0.0-test"
SUBPROCESS_TIMEOUT = 90

pytestmark = pytest.mark.timeout(30)

PIN = re.compile(r"([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)==([A-Za-z0-9.+!_-]+)")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def canon(name: str) -> str:
    """PEP 503 normalized name: `Jinja2` and `jinja2`, `PyYAML` and `pyyaml` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


# --- the locks ------------------------------------------------------------------------------------


def read_pins(path: Path) -> dict[str, str]:
    """name -> version of a requirements file, following `-r` includes; every other line must be `name==version`."""
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            included = read_pins(path.parent / line[3:].strip())
        else:
            m = PIN.fullmatch(line)
            assert m, f"{path.name}: not a name==version pin: {raw!r}"
            included = {canon(m[1]): m[2]}
        for name, version in included.items():
            assert pins.setdefault(name, version) == version, (
                f"{path.name}: {name} pinned twice ({pins[name]}, {version})"
            )
    return pins


def lock_entries(text: str) -> list[list[str]]:
    """The lock's entries as pip reads them: backslash-continued lines joined, then comments dropped, then split."""
    joined = re.sub(r"\\\n", " ", text)
    return [line.split() for line in (re.sub(r"(^|\s)#.*$", "", raw) for raw in joined.splitlines()) if line.strip()]


def lock_problems(requirements: Path, lock: Path) -> list[str]:
    """What makes `lock` not a hashed lock of `requirements` (empty: it is one)."""
    problems: list[str] = []
    locked: dict[str, str] = {}
    for tokens in lock_entries(lock.read_text()):
        m = PIN.fullmatch(tokens[0])
        if not m:
            problems.append(f"{lock.name}: not a name==version pin: {' '.join(tokens)[:120]!r}")
            continue
        name, version = canon(m[1]), m[2]
        hashes = tokens[1:]
        bad = [t for t in hashes if not HASH.fullmatch(t)]
        if bad:
            problems.append(f"{lock.name}: {name}: not a --hash=sha256:<64 hex>: {bad[:3]}")
        if not hashes:
            problems.append(f"{lock.name}: {name}=={version} has no --hash=sha256:")
        if name in locked:
            problems.append(f"{lock.name}: {name} locked twice")
        locked[name] = version
    for name, version in read_pins(requirements).items():
        if name not in locked:
            problems.append(f"{lock.name}: {name} (pinned in {requirements.name}) is missing")
        elif locked[name] != version:
            problems.append(f"{lock.name}: {name}=={locked[name]}, but {requirements.name} pins {version}")
    return problems


def locked_versions(lock: Path) -> dict[str, str]:
    return {canon(m[1]): m[2] for tokens in lock_entries(lock.read_text()) if (m := PIN.fullmatch(tokens[0]))}


@pytest.mark.parametrize(
    "requirements, lock", [("requirements.txt", "requirements.lock"), ("requirements-dev.txt", "requirements-dev.lock")]
)
def test_lock_pins_every_requirement_with_hashes(requirements, lock):
    assert lock_problems(REPO / requirements, REPO / lock) == [], "regenerate with `make lock`"


def test_dev_lock_holds_the_runtime_lock():
    """The venv the tests run in (dev lock) has the runtime packages at the versions that ship (runtime lock)."""
    runtime, dev = locked_versions(REPO / "requirements.lock"), locked_versions(REPO / "requirements-dev.lock")
    assert runtime
    assert {n: (v, dev.get(n)) for n, v in runtime.items() if dev.get(n) != v} == {}


def test_pyproject_dependencies_are_the_runtime_pins():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    matches = [PIN.fullmatch(d.strip()) for d in deps]
    assert all(matches), [d for d, m in zip(deps, matches) if not m]
    pyproject = {canon(m[1]): m[2] for m in matches if m}
    assert len(pyproject) == len(deps), "a package listed twice"
    assert pyproject == read_pins(REPO / "requirements.txt")


# A lock as pip-compile writes one (hashes made up): the check's own tests break it and expect a complaint.
SAMPLE_REQUIREMENTS = "# runtime\nPyYAML==6.0.3\nJinja2==3.1.6\n"
SAMPLE_LOCK = """\
#
# This file is autogenerated by pip-compile with Python 3.11
#
jinja2==3.1.6 \\
    --hash=sha256:{a} \\
    --hash=sha256:{b}
    # via -r requirements.txt
markupsafe==3.0.4 \\
    --hash=sha256:{c}
    # via jinja2
pyyaml==6.0.3 \\
    --hash=sha256:{d} \\
    --hash=sha256:{e}
    # via -r requirements.txt

# The following packages are considered to be unsafe in a requirements file:
setuptools==84.2.1 \\
    --hash=sha256:{f}
    # via pulumi-policy
""".format(**{k: k * 64 for k in "abcdef"})

MUTATIONS = {
    "hashes removed": lambda t: re.sub(r"(pyyaml==6.0.3) \\\n.*\n.*\n", r"\1\n", t),
    "only hash removed": lambda t: re.sub(r"(markupsafe==3.0.4) \\\n.*\n", r"\1\n", t),
    "version changed": lambda t: t.replace("jinja2==3.1.6", "jinja2==3.1.5"),
    "range not pin": lambda t: t.replace("pyyaml==", "pyyaml>="),
    "hash truncated": lambda t: t.replace("a" * 64, "a" * 63),
    "entry removed": lambda t: re.sub(r"jinja2==.*?(?=markupsafe)", "", t, flags=re.S),
    "unhashed extra line": lambda t: t + "typing-extensions==4.16.0\n",
    "transitive unpinned": lambda t: t.replace("markupsafe==3.0.4", "markupsafe"),
    "locked twice": lambda t: t + "pyyaml==6.0.3 --hash=sha256:" + "d" * 64 + "\n",
}


def test_lock_check_passes_the_sample(tmp_path):
    (tmp_path / "requirements.txt").write_text(SAMPLE_REQUIREMENTS)
    (tmp_path / "requirements.lock").write_text(SAMPLE_LOCK)
    assert lock_problems(tmp_path / "requirements.txt", tmp_path / "requirements.lock") == []
    assert locked_versions(tmp_path / "requirements.lock") == {
        "jinja2": "3.1.6",
        "markupsafe": "3.0.4",
        "pyyaml": "6.0.3",
        "setuptools": "84.2.1",
    }


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_lock_check_catches(tmp_path, mutation):
    (tmp_path / "requirements.txt").write_text(SAMPLE_REQUIREMENTS)
    broken = MUTATIONS[mutation](SAMPLE_LOCK)
    assert broken != SAMPLE_LOCK
    (tmp_path / "requirements.lock").write_text(broken)
    assert lock_problems(tmp_path / "requirements.txt", tmp_path / "requirements.lock") != []


# --- installs -------------------------------------------------------------------------------------


def _run(argv: list, cwd: Path, env: dict | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT
    )
    assert proc.returncode == 0, f"{' '.join(map(str, argv))} -> rc {proc.returncode}\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def _clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(
        PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1", GIT_TERMINAL_PROMPT="0"
    )
    env.update(extra)
    return env


def _pip_install(spec: str, target: Path, cwd: Path) -> None:
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--check-build-dependencies",
            "--target",
            target,
            spec,
        ],
        cwd=cwd,
        env=_clean_env(),
    )


def _sources(root: Path, pattern: str) -> dict[str, str]:
    """relative path -> sha256 of the files under `root` that match `pattern`."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.glob(pattern))
        if p.is_file() and "__pycache__" not in p.parts
    }


def _check_installed(target: Path, source: Path, elsewhere: Path) -> dict:
    """The copy in `target` is the project in `source`: imports from there, has every module and data file."""
    elsewhere.mkdir()
    probe = (
        "import json, vllm_stack, vllm_stack.cli; "
        "print(json.dumps({'pkg': vllm_stack.__file__, 'cli': vllm_stack.cli.__file__}))"
    )
    env = _clean_env(PYTHONPATH=str(target))
    files = json.loads(_run([sys.executable, "-c", probe], cwd=elsewhere, env=env))
    for module, path in files.items():
        assert Path(path).resolve().is_relative_to(target.resolve()), (module, path)
    assert "plan" in _run([sys.executable, "-m", "vllm_stack", "--help"], cwd=elsewhere, env=env)

    pyproject = tomllib.loads((source / "pyproject.toml").read_text())
    package_data = pyproject["tool"]["setuptools"]["package-data"]["vllm_stack"]
    assert sorted(package_data) == ["data/*.yaml", "render/templates/*.j2"]
    for pattern in package_data:
        wanted = _sources(source / "vllm_stack", pattern)
        assert wanted, f"no vllm_stack/{pattern} in {source}"
        installed = _sources(target / "vllm_stack", pattern)
        assert sorted(installed) == sorted(wanted), f"vllm_stack/{pattern}"
        assert installed == wanted, f"vllm_stack/{pattern}: contents differ"
    # Every module of every package that [tool.setuptools.packages.find] includes (namespaces too).
    for top in sorted({p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}):
        if (source / top).is_dir():
            wanted = _sources(source / top, "**/*.py")
            assert sorted(_sources(target / top, "**/*.py")) == sorted(wanted), top

    dist_infos = list(target.glob("vllm_stack-*.dist-info"))
    assert len(dist_infos) == 1, dist_infos
    meta = (dist_infos[0] / "METADATA").read_text()
    # The version has one definition, vllm_stack.__version__ ([tool.setuptools.dynamic] reads it).
    assert pyproject["project"]["dynamic"] == ["version"]
    import vllm_stack

    assert f"\nVersion: {vllm_stack.__version__}\n" in meta
    requires = [line.split(": ", 1)[1] for line in meta.splitlines() if line.startswith("Requires-Dist: ")]
    assert requires == pyproject["project"]["dependencies"]
    return json.loads((dist_infos[0] / "direct_url.json").read_text())


@pytest.mark.timeout(150)
def test_pip_install_from_the_checkout(tmp_path):
    """`pip install <checkout>`, working tree as it is (uncommitted files too). Built from a copy: pip builds
    in-tree, and setuptools would leave build/ and *.egg-info in the checkout (and reuse a stale build/lib)."""
    src = tmp_path / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "node_modules",
            "__pycache__",
            "*.pyc",
            ".pytest_cache",
            "*.egg-info",
            "build",
            "out",
            "plan-out",
        ),
    )
    _pip_install(str(src), tmp_path / "site", cwd=tmp_path)
    direct = _check_installed(tmp_path / "site", src, tmp_path / "elsewhere")
    assert direct["url"] == src.as_uri() and "dir_info" in direct, direct


@pytest.mark.timeout(150)
def test_pip_install_from_a_git_tag(tmp_path):
    """`pip install git+file://<clone>@<tag>`: the committed tree at a tag builds and imports."""
    clone = tmp_path / "clone"
    git_env = _clean_env(GIT_CONFIG_NOSYSTEM="1")
    _run(["git", "clone", "--quiet", "--no-hardlinks", REPO.as_uri(), clone], cwd=tmp_path, env=git_env)
    _run(["git", "-C", clone, "tag", TAG], cwd=tmp_path, env=git_env)
    commit = _run(["git", "-C", clone, "rev-parse", f"{TAG}^{{commit}}"], cwd=tmp_path, env=git_env).strip()
    _pip_install(f"git+{clone.as_uri()}@{TAG}", tmp_path / "site", cwd=tmp_path)
    direct = _check_installed(tmp_path / "site", clone, tmp_path / "elsewhere")
    assert direct["url"] == clone.as_uri(), direct
    assert direct["vcs_info"] == {"vcs": "git", "requested_revision": TAG, "commit_id": commit}, direct
