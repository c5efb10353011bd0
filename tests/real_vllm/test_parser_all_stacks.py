"""Every `vllm serve` command line the stack renders, for every shipped stack, through vLLM's OWN parser.

Stacks: `Pulumi.*.yaml`, `examples/Pulumi.*.yaml`, and the `tests/policy/cases/*.yaml` whose
header says `# expect: pass` (a good case; today every case there is a bad one).

Two independent sources of argv, parsed together in ONE `parse_argvs` call (one vLLM import):
* the renderers, called directly for every model of every stack and every target the stack
  uses: `serve_argv(spec)`, the systemd wrapper's SERVE_ARGS (read by bash itself), the k8s
  Deployment container args (`model_objects`), the docker container argv;
* the offline plan's artifacts (`python -m vllm_stack plan FILE --out DIR`): container `.argv`
  files, `bin/vllm-start-*` wrappers, `k8s/deployment-*.yaml` args.
Every one must parse, and parse to what the config says (served name, TP, lengths, ...).

The same call checks the refusal table of `vllm_stack/flags.py` against vLLM: each refused flag
has an explicit expected verdict below, so the table is checked, not assumed.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.real_vllm import harness
from tests.real_vllm.conftest import serve_args_of_wrapper
from vllm_stack import defaults as D
from vllm_stack import flags
from vllm_stack.loader import load_stack_file
from vllm_stack.placement import place
from vllm_stack.render import systemd as systemd_render
from vllm_stack.render.k8s_model import model_objects
from vllm_stack.render.vllm_args import serve_argv
from vllm_stack.render.weights import model_path

pytestmark = [pytest.mark.real_vllm, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
CASES = REPO / "tests" / "policy" / "cases"
GOOD_CASE = re.compile(r"^#\s*expect:\s*(pass|ok|none|clean|good)\s*$", re.I)
SAMPLE_MODEL = "meta-llama/Llama-3.1-8B-Instruct"

# What vLLM 0.32's own parser does with every flag/value vllm_stack/flags.py refuses.
#   "refused": vLLM rejects it too (unrecognized argument / invalid choice);
#   "accepted": vLLM takes it: the refusal is the stack's own rule (secrets stay off argv).
UPSTREAM_VERDICT = {
    "--speculative-model": "refused",  # removed upstream (--speculative-config)
    "--num-speculative-tokens": "refused",
    "--speculative-draft-tensor-parallel-size": "refused",
    "--disable-log-requests": "refused",  # gone in 0.32 (was deprecated)
    "--api-key": "accepted",  # valid vLLM flag; the stack forbids it on argv
    "--hf-token": "accepted",
    "--dtype fp8": "refused",  # invalid choice
}
# A value for each flag that takes one (None: a switch).
FLAG_VALUE = {
    "--speculative-model": "x",
    "--num-speculative-tokens": "3",
    "--speculative-draft-tensor-parallel-size": "1",
    "--disable-log-requests": None,
    "--api-key": "k" * 20,
    "--hf-token": "hf_" + "x" * 20,
}
# Every flag the renderer manages must exist in vLLM, with the parsed field it sets (None: not in
# parse_argv's FIELDS, parse success is the check).
MANAGED_PROBE = {
    "--served-model-name": (["a"], "served_model_name", ["a"]),
    "--tensor-parallel-size": (["2"], "tensor_parallel_size", 2),
    "--gpu-memory-utilization": (["0.85"], "gpu_memory_utilization", 0.85),
    "--max-model-len": (["1024"], "max_model_len", 1024),
    "--max-num-seqs": (["7"], "max_num_seqs", 7),
    "--quantization": (["awq"], "quantization", "awq"),
    "--kv-cache-dtype": (["fp8"], "kv_cache_dtype", "fp8"),
    "--host": (["127.0.0.2"], "host", "127.0.0.2"),
    "--port": (["8123"], "port", 8123),
    "--model": ([SAMPLE_MODEL], "model", SAMPLE_MODEL),
    "--download-dir": (["/models"], None, None),
    "--shutdown-timeout": (["7"], "shutdown_timeout", 7),
}


def stack_files() -> list[Path]:
    files = sorted(REPO.glob("Pulumi.*.yaml")) + sorted((REPO / "examples").glob("Pulumi.*.yaml"))
    return files + good_cases()


def good_cases() -> list[Path]:
    good = []
    for p in sorted(CASES.glob("*.yaml")):
        head = [ln for ln in p.read_text().splitlines()[:5] if ln.lower().startswith("# expect:")]
        assert head, f"{p.name}: no `# expect:` header (the good/bad convention changed?)"
        if GOOD_CASE.match(head[0]):
            good.append(p)
    return good


def _rel(p: Path) -> str:
    return str(p.relative_to(REPO))


# --------------------------------------------------------------------------- argv sources


def renderer_argvs(path: Path) -> list[tuple[str, str, list[str]]]:
    """(label, model name, argv) from the renderers, for every target the stack deploys to."""
    cfg = load_stack_file(path)
    out: list[tuple[str, str, list[str]]] = []
    for spec in cfg.models:
        out.append((f"{_rel(path)} {spec.name} serve_argv()", spec.name, serve_argv(spec)))
    if cfg.platform == "kubernetes":
        for spec in cfg.models:
            for obj in model_objects(cfg, spec, secret_name="vllm-model-secrets"):
                if obj["kind"] != "Deployment":
                    continue
                for c in obj["spec"]["template"]["spec"]["containers"]:
                    if c.get("args"):
                        out.append(
                            (
                                f"{_rel(path)} Deployment {obj['metadata']['name']} args (model_objects)",
                                spec.name,
                                list(c["args"]),
                            )
                        )
    else:
        placed = place(cfg)
        for spec in cfg.models:
            for r in placed[spec.name]:
                if cfg.host_runtime == "systemd":
                    text = systemd_render.render_start_wrapper(cfg, spec, r)
                    out.append(
                        (
                            f"{_rel(path)} {r.host} {systemd_render.wrapper_name(spec, r)} SERVE_ARGS",
                            spec.name,
                            serve_args_of_wrapper(text),
                        )
                    )
                else:  # components/vllm_server.py VllmServer._container
                    out.append(
                        (
                            f"{_rel(path)} {r.host} container {r.name} argv",
                            spec.name,
                            serve_argv(spec, host="0.0.0.0", port=D.VLLM_PORT, model_path=model_path(spec)),
                        )
                    )
    return out


def run_plan(path: Path, out: Path) -> tuple[int, str, float]:
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "vllm_stack", "plan", str(path), "--out", str(out), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return r.returncode, r.stderr[-3000:], time.monotonic() - t0


def _is_vllm_argv(args: list[str]) -> bool:
    """A `vllm serve` argv (model positional first, a served name), not a sidecar's (the nginx exporter's)."""
    return bool(args) and not args[0].startswith("-") and "--served-model-name" in args


def plan_argvs(path: Path, out: Path) -> list[tuple[str, str | None, list[str]]]:
    """(label, model name or None, argv) read back from the plan's artifacts."""
    found: list[tuple[str, str | None, list[str]]] = []
    for f in sorted(out.glob("hosts/*/containers/*.argv")):
        # one line, words joined by single spaces (components/vllm_server.py)
        args = shlex.split(f.read_text())
        if _is_vllm_argv(args):
            found.append((f"{_rel(path)} plan {f.relative_to(out)}", None, args))
    for f in sorted(out.glob("hosts/*/bin/vllm-start-*")):
        found.append((f"{_rel(path)} plan {f.relative_to(out)}", None, serve_args_of_wrapper(f.read_text())))
    for f in sorted(out.glob("k8s/*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "Deployment":
                continue
            for c in doc["spec"]["template"]["spec"]["containers"]:
                args = c.get("args") or []
                if _is_vllm_argv(args):
                    found.append((f"{_rel(path)} plan {f.relative_to(out)} ({c['name']})", None, list(args)))
    return found


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    """Plan every stack into a temp dir (2 at a time): {path: (rc, stderr, seconds, out dir)}."""
    root = tmp_path_factory.mktemp("plans")
    files = stack_files()
    outs = {p: root / f"{i}-{p.stem}" for i, p in enumerate(files)}
    with ThreadPoolExecutor(2) as ex:
        results = dict(zip(files, ex.map(lambda p: run_plan(p, outs[p]), files)))
    return {p: (*results[p], outs[p]) for p in files}


@pytest.fixture(scope="module")
def parsed(plans):
    """Everything parsed in ONE parse_argvs call: rendered argv, plan argv, flag probes."""
    items: list[tuple[str, str, str | None, list[str]]] = []  # (kind, label, model, argv)
    for path in stack_files():
        for label, model, argv in renderer_argvs(path):
            items.append(("render", label, model, argv))
        rc, _, _, out = plans[path]
        if rc in (0, 1) and out.exists():  # 1 = a policy failed; artifacts are still written
            for label, model, argv in plan_argvs(path, out):
                items.append(("plan", label, model, argv))
    for flag, verdict in UPSTREAM_VERDICT.items():
        if flag == "--dtype fp8":
            argv = [SAMPLE_MODEL, "--dtype", "fp8"]
        else:
            v = FLAG_VALUE[flag]
            argv = [SAMPLE_MODEL, flag] + ([v] if v is not None else [])
        items.append(("refusal", flag, None, argv))
    for flag, (vals, _, _) in MANAGED_PROBE.items():
        argv = [flag, *vals] if flag == "--model" else [SAMPLE_MODEL, flag, *vals]
        items.append(("managed", flag, None, argv))
    for alias, full in flags.ALIASES.items():
        vals = MANAGED_PROBE[full][0]
        items.append(("alias", alias, None, [SAMPLE_MODEL, alias, *vals]))
    for dtype in flags.DTYPE_CHOICES:
        items.append(("dtype", dtype, None, [SAMPLE_MODEL, "--dtype", dtype]))
    t0 = time.monotonic()
    results = harness.parse_argvs([argv for *_, argv in items])
    print(f"\nparse_argvs: {len(items)} argument lists in one vLLM process, {time.monotonic() - t0:.1f}s")
    return [(kind, label, model, argv, res) for (kind, label, model, argv), res in zip(items, results)]


def _of(parsed, kind):
    return [p for p in parsed if p[0] == kind]


def test_every_rendered_vllm_argv_of_every_stack_parses(parsed):
    rendered = _of(parsed, "render") + _of(parsed, "plan")
    stacks = {lbl.split(" ")[0] for _, lbl, *_ in rendered}
    assert stacks == {_rel(p) for p in stack_files()}, stacks
    bad = [(lbl, " ".join(argv), res["error"]) for _, lbl, _, argv, res in rendered if not res["ok"]]
    assert not bad, "vLLM refuses rendered argv:\n" + "\n".join(map(str, bad))
    # and each parses to what the config says
    for path in stack_files():
        cfg = load_stack_file(path)
        specs = {m.name: m for m in cfg.models}
        for _, lbl, model, argv, res in rendered:
            if not lbl.startswith(_rel(path) + " "):
                continue
            got = res["parsed"]
            spec = specs[model] if model else specs[got["served_model_name"][0]]
            want = {
                # what the stack deploys loads the pre-fetched directory (render/weights.py)
                "model": spec.model if "serve_argv()" in lbl else model_path(spec),
                "served_model_name": [spec.name],
                "tensor_parallel_size": spec.tensor_parallel,
                "max_model_len": spec.max_model_len,
                "max_num_seqs": spec.max_num_seqs,
                "gpu_memory_utilization": spec.gpu_memory_utilization,
                "quantization": None if spec.quantization == "none" else spec.quantization,
                "kv_cache_dtype": spec.kv_cache_dtype,
                "dtype": "auto",
                "shutdown_timeout": spec.pool.drain_seconds,  # in-flight requests drain on SIGTERM
            }
            assert {k: got[k] for k in want} == want, lbl
            assert "--api-key" not in argv and "--hf-token" not in argv, lbl
    print(
        f"\n{len(rendered)} rendered argv from {len(stacks)} stacks ({len(_of(parsed, 'render'))} from the "
        f"renderers, {len(_of(parsed, 'plan'))} from plan artifacts) all parse; "
        f"good policy cases: {[p.name for p in good_cases()] or 'none'}"
    )


def test_plan_artifacts_carry_exactly_the_renderers_argv(plans, parsed):
    """The argv the plan writes (and deploys) is the one the renderers give: what we parsed is what ships."""
    failed = {_rel(p): (rc, err) for p, (rc, err, _, _) in plans.items() if rc not in (0, 1)}
    assert not failed, "plan failed:\n" + json.dumps(failed, indent=1)
    for path in stack_files():
        r = sorted(
            tuple(a)
            for k, lbl, _, a, _ in parsed
            if k == "render" and lbl.startswith(_rel(path) + " ") and "serve_argv()" not in lbl
        )
        p = sorted(tuple(a) for k, lbl, _, a, _ in parsed if k == "plan" and lbl.startswith(_rel(path) + " "))
        assert p, f"{_rel(path)}: the plan wrote no vLLM argv artifact"
        assert p == r, f"{_rel(path)}: plan artifacts differ from the renderers"
    print("\nplan seconds: " + ", ".join(f"{_rel(p)} {s:.1f}" for p, (_, _, s, _) in plans.items()))


def test_flag_refusals_match_vllm_own_parser(parsed):
    # the expected table covers exactly the refusals of flags.py: a new refusal needs a verdict here
    assert set(UPSTREAM_VERDICT) == set(flags.REMOVED) | set(flags.SECRET_FLAGS) | {"--dtype fp8"}
    got = {lbl: ("accepted" if res["ok"] else "refused") for kind, lbl, _, _, res in parsed if kind == "refusal"}
    assert got == UPSTREAM_VERDICT
    for kind, lbl, _, _, res in parsed:
        if kind == "refusal" and not res["ok"]:
            why = "invalid choice" if lbl == "--dtype fp8" else "unrecognized arguments"
            assert why in res["error"] and lbl.split()[0] in res["error"], (lbl, res["error"])
    # ... and the stack refuses each of them itself
    for flag in UPSTREAM_VERDICT:
        args = flag.split() if " " in flag else [flag] + ([FLAG_VALUE[flag]] if FLAG_VALUE[flag] else [])
        assert flags.problems(args), flag

    # DTYPE_CHOICES is exactly vLLM's --dtype choice list (read from vLLM's own error message)
    dtype_err = next(res["error"] for kind, lbl, _, _, res in parsed if lbl == "--dtype fp8")
    choices = set(re.findall(r"'([^']+)'", dtype_err.split("choose from", 1)[1]))
    assert choices == set(flags.DTYPE_CHOICES), choices
    assert all(res["ok"] for kind, *_, res in parsed if kind == "dtype")

    # every managed flag exists in vLLM and sets the field the renderer means; aliases too
    assert set(MANAGED_PROBE) == set(flags.MANAGED)
    for kind, lbl, _, argv, res in parsed:
        if kind not in ("managed", "alias"):
            continue
        assert res["ok"], (lbl, res["error"])
        full = flags.ALIASES.get(lbl, lbl)
        _, field, value = MANAGED_PROBE[full]
        if field:
            assert res["parsed"][field] == value, (lbl, res["parsed"])
