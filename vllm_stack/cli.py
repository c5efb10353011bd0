"""`python -m vllm_stack plan <stack|path.yaml> [--out DIR] [--json] [--diff OTHER]`, `docs` and `recommend`."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

from . import defaults as D
from .loader import ConfigError, display_text, resolve_stack_path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEBUG_ENV = "VLLM_STACK_DEBUG"
MAX_DIFF_JSON_BYTES = 64 << 20
#: Exit codes: each means one thing.
EXIT_OK, EXIT_POLICY, EXIT_INPUT, EXIT_INTERNAL = 0, 1, 2, 3

EPILOG = """\
exit codes:
  0  clean: the plan ran, no mandatory policy failed (docs: up to date / written)
  1  a mandatory policy failed (docs --check: the generated docs are out of date;
     recommend: no configuration fits and meets the SLA);
     the plan is still printed, but nothing is written to --out
  2  bad input or usage: one line on stderr naming the key or argument
     (`error: models[0].gpu: ...`, `error: --out: ...`); nothing is written
  3  internal error (a bug): one line `error: internal error: ...`; nothing is written;
     set VLLM_STACK_DEBUG=1 for the traceback

--out DIR is written atomically (a temporary directory beside DIR, then swapped in) and
only if every check passed, --diff included. DIR must be a new path, an empty directory,
or the output of a previous plan (its plan.json carries "generator": "vllm-stack plan");
the previous plan's files are replaced, anything else in DIR makes the plan refuse (exit 2).
The current directory and its ancestors, $HOME, /, a repository root (.git) and the
program's own checkout are always refused.
"""


class InternalError(Exception):
    """A bug reported by a child plan (`--diff STACK`): relayed as exit 3."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vllm_stack",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    plan = sub.add_parser(
        "plan",
        help="offline plan: program under mocks, policies, artifacts, capacity and cost",
        description="Offline plan: the program under Pulumi mocks, the policy pack, rendered "
        "artifacts, capacity and monthly cost.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plan.add_argument("stack", help="stack name (dev, prod → Pulumi.<name>.yaml) or a path to a stack file")
    plan.add_argument(
        "--out",
        metavar="DIR",
        help="write rendered artifacts and plan.json here (atomically; only if every check passed; "
        "DIR must be new, empty or a previous plan's output)",
    )
    plan.add_argument("--json", action="store_true", help="print the plan as JSON instead of tables")
    plan.add_argument("--diff", metavar="OTHER", help="compare with another stack file or a previous --json output")
    docs = sub.add_parser(
        "docs",
        help="regenerate the config reference (README section and JSON schema)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    docs.add_argument("--check", action="store_true", help="exit 1 if the generated docs are out of date")
    rec = sub.add_parser(
        "recommend",
        help="cheapest GPU x quantization x TP x replicas that fits and meets a latency SLA at a peak load",
        description="Rank GPU x quantization x tensor parallel x replicas (on-demand floor + spot) by $/month "
        "among the configurations that fit (vLLM-like memory accounting) and meet the SLA (roofline model "
        "from catalog bandwidth/FLOPS), and print the stack snippet of the winner.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rec.add_argument("--model", required=True, help="catalog model id (its pre-quantized checkpoints are candidates)")
    load = rec.add_mutually_exclusive_group(required=True)
    load.add_argument("--rps", help="peak requests/second")
    load.add_argument("--tokens-per-second", help="peak generated tokens/second (rps = this / --output-tokens)")
    rec.add_argument("--prompt-tokens", default="512", help="mean prompt length (default 512)")
    rec.add_argument("--output-tokens", default="256", help="mean output length (default 256)")
    rec.add_argument("--ttft-p95-ms", required=True, help="SLA: time to first token, p95, milliseconds")
    rec.add_argument("--itl-p95-ms", required=True, help="SLA: inter-token latency, p95, milliseconds")
    rec.add_argument("--max-model-len", default=None, help="maxModelLen to size for (default prompt + output)")
    rec.add_argument("--gpus", default=None, help="comma-separated catalog GPU ids to consider (default all)")
    rec.add_argument("--on-demand-floor", default=str(D.RECOMMEND_ON_DEMAND_FLOOR), help="on-demand replicas kept")
    rec.add_argument("--headroom-pct", default=str(D.LOAD_BUFFER_PCT_DEFAULT), help="capacity head-room, percent")
    rec.add_argument("--top", default=str(D.RECOMMEND_TOP), help="rows of the ranking to print")
    rec.add_argument("--name", default=None, help="served model name of the snippet (default from --model)")
    rec.add_argument("--json", action="store_true", help="print the ranking and the winner as JSON")
    return p


# --- --diff ----------------------------------------------------------------------------------------


def _diff_error(message: str) -> ConfigError:
    return ConfigError("--diff", message)


def _read_plan_json(path: Path) -> dict[str, Any]:
    from .offline.report import plan_document_problem

    shown = _text(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_DIFF_JSON_BYTES + 1)
    except OSError as exc:
        raise _diff_error(f"{shown}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_DIFF_JSON_BYTES:
        raise _diff_error(f"{shown}: larger than {MAX_DIFF_JSON_BYTES >> 20} MiB; not a plan document")
    try:
        doc: dict[str, Any] = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise _diff_error(f"{shown}: not UTF-8; expected a `plan --json` document") from None
    except json.JSONDecodeError as exc:
        raise _diff_error(f"{shown}: not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer beyond Python's digit limit
        raise _diff_error(f"{shown}: not a plan document ({_first_line(str(exc))})") from None
    problem = plan_document_problem(doc)
    if problem:
        raise _diff_error(f"{shown}: {problem}")
    return doc


class _OtherPlan:
    """`--diff OTHER`: a previous `--json` file (read now) or a stack (planned in a child process).

    The mock engine is process-wide, so the other stack runs in its own process, started before
    this plan so both run at once.
    """

    def __init__(self, other: str):
        self.doc: dict[str, Any] | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        if other == "":
            raise _diff_error("is empty; give a stack name, a stack file or a previous `plan --json` output")
        path = Path(other)
        if path.suffix == ".json":
            self.doc = _read_plan_json(path)
            return
        stack_path = resolve_stack_path(other, REPO_ROOT)
        if not stack_path.is_file():
            raise _diff_error(
                f"no stack file {_text(stack_path)}"
                + ("" if stack_path.exists() else f" (stacks here: {_known_stacks()})")
            )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vllm_stack", "plan", os.path.abspath(stack_path), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
        )

    def result(self) -> dict[str, Any]:
        if self.doc is not None:
            return self.doc
        assert self.proc is not None
        out, err = self.proc.communicate()
        rc, self.proc = self.proc.returncode, None
        lines = err.decode("utf-8", "backslashreplace").strip().splitlines()
        last = lines[-1].removeprefix("error: ") if lines else "no message"
        if rc == EXIT_INPUT:
            raise _diff_error(last)
        if rc not in (EXIT_OK, EXIT_POLICY):
            raise InternalError(
                f"--diff: the plan of the other stack failed (exit {rc}): {last.removeprefix('internal error: ')}"
            )
        try:
            doc: dict[str, Any] = json.loads(out.decode("utf-8"))
        except ValueError as exc:
            raise InternalError(f"--diff: the plan of the other stack printed no JSON: {exc}") from None
        return doc

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.communicate()
            self.proc = None


# --- plan ------------------------------------------------------------------------------------------


def _known_stacks() -> str:
    return ", ".join(sorted(p.name for p in REPO_ROOT.glob("Pulumi.*.yaml")))


def cmd_plan(args: argparse.Namespace) -> int:
    """Every check first (--out, stack, program, policies, --diff), then write, then print."""
    from .offline.plan import build_plan, check_out_dir, write_artifacts
    from .offline.report import _console, diff_plans, print_diff, print_plan

    out = check_out_dir(args.out) if args.out is not None else None
    path = resolve_stack_path(args.stack, REPO_ROOT)
    if not path.exists():
        raise ConfigError(_text(path), f"no stack file (stacks here: {_known_stacks()})")
    other = _OtherPlan(args.diff) if args.diff is not None else None
    try:
        result = build_plan(path)
        diff = diff_plans(other.result(), result.document) if other is not None else None
    finally:
        if other is not None:
            other.close()
    write = out is not None and not result.mandatory_failures

    if args.json:
        doc = dict(result.document)
        if diff is not None:
            doc["diff"] = diff
        text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    else:
        console = _console()
        with console.capture() as captured:
            print_plan(result, out_dir=out.path if write and out is not None else None, console=console)
            if diff is not None:
                print_diff(diff, console=console)
        text = captured.get()

    if write and out is not None:
        try:
            write_artifacts(result, out)
        except OSError as exc:
            raise ConfigError(
                "--out", f"{_text(args.out)}: cannot write ({exc.strerror or exc}); nothing written"
            ) from None
    sys.stdout.write(text)
    sys.stdout.flush()
    if result.mandatory_failures:
        first = result.mandatory_failures[0]
        n = len(result.mandatory_failures)
        print(
            f"error: mandatory policy failed: {first['policy']}: {_first_line(first['message'])}"
            + (f" (and {n - 1} more)" if n > 1 else "")
            + ("; nothing written to --out" if out is not None else ""),
            file=sys.stderr,
        )
        return EXIT_POLICY
    return EXIT_OK


# --- docs ------------------------------------------------------------------------------------------


def cmd_docs(args: argparse.Namespace) -> int:
    from .docs import check_docs, write_docs

    try:
        if args.check:
            stale = check_docs()
            if stale:
                print(f"error: out of date: {', '.join(stale)}; run `python -m vllm_stack docs`", file=sys.stderr)
                return EXIT_POLICY
            return EXIT_OK
        write_docs()
    except SystemExit as exc:  # docs.py: README.md lacks the reference markers
        if isinstance(exc.code, str):
            raise ConfigError("", exc.code) from None
        raise
    except OSError as exc:
        raise ConfigError(_text(exc.filename or "docs"), exc.strerror or str(exc)) from None
    return EXIT_OK


# --- errors ----------------------------------------------------------------------------------------

_text = display_text


def _number(option: str, raw: str | None, *, integer: bool, low: float, high: float) -> float:
    """A command-line number in [low, high] (exclusive low for floats), or exit 2 naming the option."""
    try:
        value = float(int(raw or "")) if integer else float(raw or "")
    except (TypeError, ValueError):
        kind = "an integer" if integer else "a number"
        raise ConfigError(option, f"{raw!r} is not {kind}") from None
    ok = (low <= value <= high) if integer else (low < value <= high and value == value)
    if not ok:
        bound = f"{low:g}..{high:g}" if integer else f"above {low:g}, at most {high:g}"
        raise ConfigError(option, f"{raw} is not allowed; allowed: {bound}")
    return value


def cmd_recommend(args: argparse.Namespace) -> int:
    from . import recommend as R
    from .catalog import gpu_ids, lookup_model, models

    info = lookup_model(args.model)
    if info is None:
        known = ", ".join(sorted({m.id for m in models().values()}))
        raise ConfigError("--model", f"{args.model!r} is not in the model catalog; allowed: {known}")
    prompt = int(_number("--prompt-tokens", args.prompt_tokens, integer=True, low=1, high=D.MAX_MODEL_LEN_LIMIT))
    output = int(_number("--output-tokens", args.output_tokens, integer=True, low=1, high=D.MAX_MODEL_LEN_LIMIT))
    if args.rps is not None:
        rps = _number("--rps", args.rps, integer=False, low=0, high=1e6)
    else:
        rps = _number("--tokens-per-second", args.tokens_per_second, integer=False, low=0, high=1e9) / output
    mml_default = str(prompt + output)
    mml = int(_number("--max-model-len", args.max_model_len or mml_default, integer=True, low=1, high=1e7))
    if mml > info.architecture.max_positions or mml < prompt + output:
        raise ConfigError(
            "--max-model-len",
            f"{mml} is not allowed; allowed: {prompt + output}..{info.architecture.max_positions} "
            f"(prompt + output up to the positions of {info.id})",
        )
    chosen = tuple(g.strip() for g in (args.gpus or ",".join(gpu_ids())).split(","))
    unknown = [g for g in chosen if g not in gpu_ids()]
    if unknown or not chosen:
        raise ConfigError("--gpus", f"{', '.join(unknown) or '(none)'} not allowed; allowed: {', '.join(gpu_ids())}")
    req = R.Request(
        model=info.id,
        peak_rps=rps,
        prompt_tokens=prompt,
        output_tokens=output,
        ttft_p95_ms=_number("--ttft-p95-ms", args.ttft_p95_ms, integer=False, low=0, high=3.6e6),
        itl_p95_ms=_number("--itl-p95-ms", args.itl_p95_ms, integer=False, low=0, high=3.6e6),
        max_model_len=mml,
        gpus=chosen,
        on_demand_floor=int(_number("--on-demand-floor", args.on_demand_floor, integer=True, low=0, high=1000)),
        headroom_pct=_number("--headroom-pct", args.headroom_pct, integer=True, low=0, high=200),
    )
    top = int(_number("--top", args.top, integer=True, low=1, high=1000))
    ranked = R.rank(req)
    winner = ranked[0] if ranked and ranked[0].meets_sla else None
    name = args.name or info.id.rsplit("/", 1)[-1].lower().replace(".", "-")[:40].strip("-_")
    snippet = R.snippet(req, winner, name) if winner else None
    if args.json:
        print(
            json.dumps(
                {"request": R.request_dict(req), "ranking": [c.as_dict() for c in ranked[:top]], "snippet": snippet},
                indent=2,
                default=str,
            )
        )
    else:
        from rich.console import Console

        from .offline.report import recommend_table

        Console(width=200).print(recommend_table(ranked[:top]))
        if snippet:
            print(f"# winner: {winner.gpu if winner else ''}; paste into Pulumi.<stack>.yaml")
            print(snippet, end="")
    if winner is None:
        why = ranked[0].why_not if ranked else "no candidate"
        print(f"error: --model: no configuration of {info.id} fits and meets the SLA (best: {why})", file=sys.stderr)
        return EXIT_POLICY
    return EXIT_OK


def _first_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _chain(exc: BaseException) -> list[BaseException]:
    """exc and what it wraps (__cause__/__context__), outermost first; pulumi's runtime re-wraps
    exceptions raised while resolving resource inputs (and its chains can loop)."""
    seen: set[int] = set()
    out: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        out.append(e)
        todo += [e.__cause__, e.__context__]
    return out


def _root_cause(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while True:
        inner = next((e for e in (exc.__cause__, exc.__context__) if e is not None and id(e) not in seen), None)
        if inner is None:
            return exc
        seen.add(id(inner))
        exc = inner


def user_error(exc: BaseException) -> BaseException | None:
    """The bad-input error in exc's chain: a ConfigError, or a ValueError subclass of this project
    (FrontRenderError, RenderError, K8sRenderError, PlacementError, ...)."""
    for e in _chain(exc):
        if isinstance(e, ConfigError):
            return e
        mod = type(e).__module__
        if (
            isinstance(e, ValueError)
            and type(e) is not ValueError
            and mod.split(".")[0] in ("vllm_stack", "components")
        ):
            return e
    return None


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"plan": cmd_plan, "docs": cmd_docs, "recommend": cmd_recommend}[args.cmd](args)
    except KeyboardInterrupt:
        print("error: interrupted; nothing written", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        print("error: stdout: broken pipe", file=sys.stderr)
        return EXIT_INPUT
    except InternalError as exc:
        print(f"error: internal error: {_first_line(str(exc))}", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as exc:  # noqa: BLE001 - every input ends in one line, never a traceback
        if _debug():
            traceback.print_exc()
        found = user_error(exc)
        if found is not None:
            print(f"error: {_first_line(str(found))}", file=sys.stderr)
            return EXIT_INPUT
        return _internal(_root_cause(exc))
    except SystemExit as exc:  # from inside the program or a library, not argparse (above the try)
        if exc.code is None or isinstance(exc.code, int):
            raise
        if _debug():
            traceback.print_exc()
        return _internal(exc)


def _internal(exc: BaseException) -> int:
    hint = "" if _debug() else f" (set {DEBUG_ENV}=1 for the traceback)"
    print(
        f"error: internal error: {type(exc).__name__}: {_first_line(str(exc)) or '(no message)'}{hint}", file=sys.stderr
    )
    return EXIT_INTERNAL


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
