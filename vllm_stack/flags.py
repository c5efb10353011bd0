"""The one table of vLLM flags the stack manages, refuses or never emits, and how vLLM reads a flag.

The renderer, the config validation and the `no-invalid-vllm-flags` policy all read this module.

extraArgs are read the way vLLM reads them. `vllm serve` parses its argv with
FlexibleArgumentParser (vllm/utils/argparse_utils.py), an argparse.ArgumentParser with
allow_abbrev on, so before a flag is compared with anything it is resolved like vLLM does:

1. FlexibleArgumentParser.parse_args rewrites the argv first: in a `--` token, `_` becomes `-`
   in the name (up to the first `.`; the value after `=` is kept); `--help=X` becomes `--help`;
   `-O3` / `-O=3` become `--optimization-level 3`; a dotted `--flag.key[+][=]value` becomes
   `--flag '{"key": value}'` (the name before the first `.` is what argparse resolves; without
   `=`, the NEXT argument is the value, whatever it looks like).
2. argparse (`_parse_optional`, CPython 3.11, identical in 3.12.1 and 3.13.0): an exact option
   string wins, then `name=value` with an exact name; then every option string starting with the
   token (a `--` token: its part before `=`) matches; one match resolves, several are an error
   ("ambiguous option ... could match ..."). A single-dash token also matches its first two
   characters as an option with the value attached (`-qawq` = `-q awq`), and prefixes of
   single-dash options (`-t` = `-tp`). Not an option at all (a positional): `-`, a negative
   number, a token with a space that matches nothing, anything after `--`.

The option strings come from vllm_stack/data/vllm_serve_flags.yaml, generated from vLLM's own
parser (tests/real_vllm/flag_table.py); tests/real_vllm/test_flag_table.py proves the table and
this resolution against vLLM's parser for every flag, alias and prefix the stack manages or refuses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

DATA_FILE = Path(__file__).with_name("data") / "vllm_serve_flags.yaml"

#: Flags the renderer sets from typed config. Repeating one in extraArgs would win silently
#: (argparse keeps the last value), so extraArgs may not carry them, in any spelling vLLM accepts.
MANAGED = {
    "--served-model-name": "models[].name",
    "--tensor-parallel-size": "models[].tensorParallel",
    "--gpu-memory-utilization": "models[].gpuMemoryUtilization",
    "--max-model-len": "models[].maxModelLen",
    "--max-num-seqs": "models[].maxNumSeqs",
    "--quantization": "models[].quantization",
    "--kv-cache-dtype": "models[].kvCacheDtype",
    "--host": "the stack (vLLM binds 127.0.0.1 / the pod IP behind the front)",
    "--port": "the stack",
    "--model": "models[].model",
    "--download-dir": "the stack (weights directory)",
    "--shutdown-timeout": "models[].pool.drainSeconds",
}
#: Other option strings vLLM has for managed flags (checked against the table by the unit tests).
ALIASES = {
    "-tp": "--tensor-parallel-size",
    "-q": "--quantization",
    "--device-memory-utilization": "--gpu-memory-utilization",
}
#: Flags whose value is a credential: anything on argv is readable in /proc/<pid>/cmdline.
SECRET_FLAGS = {
    "--api-key": "set the apiKey secret; the stack passes VLLM_API_KEY through the 0600 env file / k8s Secret",
    "--hf-token": "set the hfToken secret; the stack passes HF_TOKEN through the 0600 env file / k8s Secret",
}
#: vLLM flags that change what vLLM reads or whether it serves at all.
CONTROL_FLAGS = {
    "--config": "vLLM would read more options from that YAML file, which the stack never sees (it could "
    "set managed or secret flags); put the options in models[].extraArgs",
    "--help": "vLLM would print its help and exit instead of serving",
}
#: Flags removed or changed upstream (vllm-facts.md).
REMOVED = {
    "--speculative-model": 'removed in vLLM; use --speculative-config \'{"model": ..., "num_speculative_tokens": N}\'',
    "--num-speculative-tokens": "removed in vLLM; part of --speculative-config",
    "--speculative-draft-tensor-parallel-size": "removed in vLLM; part of --speculative-config",
    "--disable-log-requests": "changed across vLLM versions; do not emit it",
}
#: `--dtype` values vLLM accepts; FP8 is `--quantization fp8` / `--kv-cache-dtype fp8`, never `--dtype fp8`.
DTYPE_CHOICES = ("auto", "half", "float16", "bfloat16", "float", "float32")

#: argparse's end-of-options marker: every later argument is a positional (vLLM refuses them).
END_OF_OPTIONS = "--"
#: FlexibleArgumentParser: `-O <n>` (a separate digit) is `--optimization-level <n>`.
OPTIMIZATION_FLAG = "--optimization-level"
_O_LEVELS = ("0", "1", "2", "3")
#: argparse's _negative_number_matcher (CPython 3.11).
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")
#: Ambiguity messages show at most this many candidates (the refused ones are always shown).
_SHOW_CANDIDATES = 10


# --------------------------------------------------------------------------- the option table


@dataclass(frozen=True)
class Action:
    """One argparse action of `vllm serve`: its option strings (vLLM's order), dest, nargs."""

    dest: str
    options: tuple[str, ...]
    nargs: int | str | None
    kind: str

    @property
    def flag(self) -> str:
        """The canonical spelling: the first `--` option string (`-tp` → `--tensor-parallel-size`)."""
        return next((o for o in self.options if o.startswith("--")), self.options[0])

    def negative(self, option: str) -> bool:
        """`--no-X` of a BooleanOptionalAction (it sets the opposite of `--X`, so it keeps its name)."""
        return self.nargs == 0 and option.startswith("--no-") and "--" + option[5:] in self.options


@dataclass(frozen=True)
class OptionTable:
    vllm_version: str
    python: str
    allow_abbrev: bool
    negative_number_options: bool
    actions: tuple[Action, ...]
    by_option: Mapping[str, Action]  # insertion order = vLLM's parser order (ambiguity messages follow it)


def load_table(path: Path = DATA_FILE) -> OptionTable:
    raw = yaml.safe_load(path.read_text())
    actions = tuple(
        Action(
            dest=str(a["dest"]),
            options=tuple(str(o) for o in a["options"]),
            nargs=a["nargs"],
            kind=str(a.get("action", "")),
        )
        for a in raw["actions"]
    )
    by_option: dict[str, Action] = {}
    for a in actions:
        for o in a.options:
            by_option.setdefault(o, a)
    parser = raw.get("parser", {})
    return OptionTable(
        vllm_version=str(raw["vllm"]["version"]),
        python=str(raw.get("python", "")),
        allow_abbrev=bool(parser.get("allow_abbrev", True)),
        negative_number_options=bool(parser.get("negative_number_options", False)),
        actions=actions,
        by_option=by_option,
    )


@lru_cache(maxsize=1)
def table() -> OptionTable:
    """vLLM's `vllm serve` option table (data/vllm_serve_flags.yaml), loaded once."""
    return load_table()


# --------------------------------------------------------------------------- resolution of one token


class AmbiguousOption(ValueError):
    """vLLM refuses the token: it is a prefix of several option strings."""

    def __init__(self, token: str, candidates: Sequence[str]):
        self.token, self.candidates = token, tuple(candidates)
        super().__init__(f"{token} is ambiguous in vLLM: it could match {', '.join(self.candidates)}")


@dataclass(frozen=True)
class Resolution:
    """What vLLM's parser makes of one argument.

    `seen_as`: the name argparse resolves (after FlexibleArgumentParser's rewriting);
    `option`: the option string it matched (`--api-key`, `-tp`, `--device-memory-utilization`);
    `flag`: the canonical flag of that option's action (`--tensor-parallel-size` for `-tp`);
    `kind`: exact (an option string, after the rewriting), prefix (a unique abbreviation, or a
    single-dash option with its value attached), ambiguous (vLLM refuses it), unknown (vLLM:
    "unrecognized arguments"), positional (argparse does not read it as an option at all);
    `explicit`: a value given inside the token (`=v`, `-qawq`), None when the value follows;
    `candidates`: every option string an ambiguous prefix could match, in vLLM's order;
    `dotted`: vLLM's `--flag.key[=v]` JSON form.
    """

    token: str
    kind: str  # exact | prefix | ambiguous | unknown | positional
    seen_as: str | None = None
    option: str | None = None
    flag: str | None = None
    explicit: str | None = None
    candidates: tuple[str, ...] = ()
    dotted: bool = False

    @property
    def positional(self) -> bool:
        return self.kind == "positional"

    @property
    def ambiguous(self) -> bool:
        return self.kind == "ambiguous"

    @property
    def unknown(self) -> bool:
        """Looks like an option but vLLM has none by that name (vLLM: "unrecognized arguments")."""
        return self.kind == "unknown"

    @property
    def shown(self) -> str:
        """The token without its `=value` (messages never echo a value: it may be a secret)."""
        return self.token.partition("=")[0]

    @property
    def exact(self) -> bool:
        """Spelled exactly as the canonical flag (`--host`, `--host=x`), so no 'resolves to' is needed."""
        return self.flag is not None and self.shown == self.flag


def _fold(token: str) -> str:
    """FlexibleArgumentParser: `_` → `-` in a `--` token's name, between `--` and the first `.`."""
    key, eq, value = token.partition("=")
    head, dot, tail = key[2:].partition(".")
    return "--" + head.replace("_", "-") + dot + tail + eq + value


def _rewrite(token: str) -> tuple[str, str | None, bool]:
    """FlexibleArgumentParser.parse_args on one token: (what argparse resolves, explicit value, dotted).

    `-O...` is handled by the caller. A dotted name reaches argparse without `=`; its value is the
    JSON vLLM builds from the part after `=` (returned as explicit) or from the next argument."""
    if token.startswith("--help="):
        return "--help", None, False
    tok = _fold(token) if token.startswith("--") else token
    if tok.startswith("-") and "." in tok:
        key, eq, value = tok.partition("=")
        if "." in key:
            return key.removesuffix("+").split(".")[0], (value if eq else None), True
    return tok, None, False


def _argparse_lookup(s: str) -> tuple[str, str | None, str | None, tuple[str, ...]]:
    """argparse's `_parse_optional` on the serve parser: (kind, option, explicit, candidates).

    kind: exact | prefix | ambiguous | unknown | positional."""
    if s.startswith("--"):
        # a `--` token matches on its part before `=` (exact or prefix alike): look the name up (cached,
        # never with a value, which may be a secret) and give the value back
        name, eq, value = s.partition("=")
        kind, option, explicit, candidates = _long_lookup(name)
        if eq and kind in ("exact", "prefix"):
            return kind, option, value, candidates
        if eq and kind == "unknown" and " " in value:
            return "positional", None, None, ()
        return kind, option, explicit, candidates
    return _short_lookup(s)


@lru_cache(maxsize=4096)
def _long_lookup(name: str) -> tuple[str, str | None, str | None, tuple[str, ...]]:
    t = table()
    if name in t.by_option:
        return "exact", name, None, ()
    matches = [o for o in t.by_option if o.startswith(name)] if t.allow_abbrev else []
    if len(matches) > 1:
        return "ambiguous", None, None, tuple(matches)
    if len(matches) == 1:
        return "prefix", matches[0], None, ()
    return ("positional" if " " in name else "unknown"), None, None, ()


def _short_lookup(s: str) -> tuple[str, str | None, str | None, tuple[str, ...]]:
    t = table()
    opts = t.by_option
    if not s or s[0] != "-":
        return "positional", None, None, ()
    if s in opts:
        return "exact", s, None, ()
    if len(s) == 1:
        return "positional", None, None, ()
    if "=" in s:
        name, value = s.split("=", 1)
        if name in opts:
            return "exact", name, value, ()
    # a single-dash token: its first two characters as an option with the rest attached, or a prefix
    short, rest = s[:2], s[2:]
    matches: list[tuple[str, str | None]] = []
    for o in opts:
        if o == short:
            matches.append((o, rest))
        elif o.startswith(s):
            matches.append((o, None))
    if len(matches) > 1:
        return "ambiguous", None, None, tuple(o for o, _ in matches)
    if len(matches) == 1:
        return "prefix", matches[0][0], matches[0][1], ()
    if _NEGATIVE_NUMBER.match(s) and not t.negative_number_options:
        return "positional", None, None, ()
    if " " in s:
        return "positional", None, None, ()
    return "unknown", None, None, ()


def _canonical(option: str) -> str:
    action = table().by_option[option]
    return option if action.negative(option) else action.flag


def lookup(token: str) -> Resolution:
    """How vLLM's `vllm serve` parser reads `token` (never raises; see Resolution)."""
    if not token.startswith("-"):
        return Resolution(token, "positional")
    if token.startswith("-O") and token != "-O":
        value = token[3:] if token[2] == "=" else token[2:]  # FlexibleArgumentParser: -O3, -O=3, -Odecode
        if OPTIMIZATION_FLAG in table().by_option:
            return Resolution(token, "exact", OPTIMIZATION_FLAG, OPTIMIZATION_FLAG, OPTIMIZATION_FLAG, value)
        return Resolution(token, "unknown", OPTIMIZATION_FLAG)
    seen, dotted_value, dotted = _rewrite(token)
    kind, option, explicit, candidates = _argparse_lookup(seen)
    if dotted:
        explicit = dotted_value
    if option is not None:
        return Resolution(token, kind, seen, option, _canonical(option), explicit, dotted=dotted)
    return Resolution(token, kind, seen, candidates=candidates, dotted=dotted)


def resolve(token: str) -> str | None:
    """The canonical flag vLLM sees for `token` (`--api-ke=x` → `--api-key`, `-t` → `--tensor-parallel-size`).

    None: vLLM does not read the token as one of its options (a positional, or an unknown option).
    Raises AmbiguousOption when vLLM refuses it as an ambiguous prefix."""
    r = lookup(token)
    if r.ambiguous:
        raise AmbiguousOption(r.shown, r.candidates)
    return r.flag


def _spelling(token: str) -> str:
    """The old exact-name normalization: `--max_model_len=1` → `--max-model-len`."""
    name = token.partition("=")[0]
    return "--" + name[2:].replace("_", "-") if name.startswith("--") else name


def normalize(flag: str, *, abbrev: bool = True) -> str:
    """The flag vLLM would see: `--max_model_len=1` → `--max-model-len`, `--gpu-memory-util` →
    `--gpu-memory-utilization`, `-tp` → `--tensor-parallel-size`.

    A token vLLM does not resolve (unknown, ambiguous, removed upstream) keeps its spelling with
    `_` folded. abbrev=False resolves exact option strings only (no prefixes), e.g. to recognise a
    vLLM command line among other programs' argv without reading `-t` as `-tp`."""
    r = lookup(flag)
    if r.flag is not None and (abbrev or r.kind == "exact"):
        return r.flag
    return _spelling(flag)


# --------------------------------------------------------------------------- reading a whole argv


@dataclass(frozen=True)
class Occurrence:
    """One option in an argv as vLLM reads it: where, how it resolved, the values it takes."""

    index: int
    resolution: Resolution
    values: tuple[str, ...]

    @property
    def flag(self) -> str:
        return self.resolution.flag or _spelling(self.resolution.token)


def _is_value(token: str) -> bool:
    """argparse would take `token` as an argument value (an 'A'), not as an option."""
    if not token.startswith("-"):
        return True
    r = lookup(token)
    return r.positional and not r.dotted and token != END_OF_OPTIONS


def occurrences(args: Sequence[str]) -> list[Occurrence]:
    """Every option of `args` (what follows `vllm serve`) with its values, read the way vLLM reads them.

    Values follow argparse's nargs (one, `?`, `+` = every following value, 0 for switches);
    a value never looks like an option, except the one after a dotted `--flag.key` (vLLM takes the
    next argument whatever it is). Reading stops at `--` (everything after it is a positional)."""
    out: list[Occurrence] = []
    n, i = len(args), 0
    while i < n:
        start, tok = i, args[i]
        i += 1
        if tok == END_OF_OPTIONS:
            break
        if tok == "-O" and i < n and args[i] in _O_LEVELS and OPTIMIZATION_FLAG in table().by_option:
            r = Resolution(tok, "exact", OPTIMIZATION_FLAG, OPTIMIZATION_FLAG, OPTIMIZATION_FLAG)
            out.append(Occurrence(start, r, (args[i],)))
            i += 1
            continue
        r = lookup(tok)
        if r.positional and not r.dotted:
            continue
        values: list[str] = []
        if r.explicit is not None:
            values.append(r.explicit)
        elif r.dotted:
            if i < n:
                values.append(args[i])
                i += 1
        elif r.option is not None:
            nargs = table().by_option[r.option].nargs
            want = 1 if nargs in (None, "?") else (n if nargs in ("+", "*") else int(nargs or 0))
            while want and i < n and _is_value(args[i]):
                values.append(args[i])
                i += 1
                want -= 1
        elif r.unknown:  # not vLLM's (e.g. removed upstream): its value as the old table read it
            if "=" in tok:
                values.append(tok.partition("=")[2])
            elif i < n and not args[i].startswith("-"):
                values.append(args[i])
                i += 1
        out.append(Occurrence(start, r, tuple(values)))
    return out


def flag_values(args: Sequence[str], flag: str) -> list[str]:
    """Every value vLLM would read for `flag` (any spelling vLLM resolves to it) in an argv, in order."""
    target = normalize(flag)
    return [v for o in occurrences(args) if o.flag == target for v in o.values]


def iter_flags(args: Iterable[str]) -> list[str]:
    """The flags vLLM sees in an argv, in order, each in its canonical spelling."""
    return [o.flag for o in occurrences(list(args))]


# --------------------------------------------------------------------------- the refusals


def _refused_note(flag: str) -> str | None:
    if flag in SECRET_FLAGS:
        return "keeps it off argv (secret)"
    if flag in MANAGED:
        return f"manages it ({MANAGED[flag]})"
    if flag in CONTROL_FLAGS:
        return "refuses it"
    return None


def _ambiguous_message(r: Resolution) -> str:
    cands = list(r.candidates)
    refused = [c for c in cands if _refused_note(_canonical(c))]
    shown = cands[:_SHOW_CANDIDATES] + [c for c in refused if c not in cands[:_SHOW_CANDIDATES]]
    more = len(cands) - len(shown)
    listing = ", ".join(shown) + (f" and {more} more" if more > 0 else "")
    msg = f"{r.shown} is ambiguous in vLLM (it could match {listing}): vLLM refuses it; spell the flag out"
    if refused:
        notes = "; ".join(
            f"{c}{'' if c == _canonical(c) else f' (= {_canonical(c)})'}: the stack {_refused_note(_canonical(c))}"
            for c in refused
        )
        msg += f" ({notes})"
    return msg


def _whitespace_message(token: str) -> str | None:
    """A dash token with whitespace that vLLM does not resolve: refused if its first word is a refused flag."""
    words = token.split(None, 1)
    if len(words) < 2:
        return None
    r = lookup(words[0])
    if r.ambiguous and any(_refused_note(_canonical(c)) for c in r.candidates):
        return (
            f"`{words[0]} …` is one argument containing whitespace, and {words[0]} alone would be "
            f"ambiguous in vLLM: {_ambiguous_message(r)}"
        )
    if r.flag is None or not _refused_note(r.flag):
        return None
    msg = (
        f"`{words[0]} …` is one argument containing whitespace: vLLM does not read it as {r.flag} "
        "(it refuses it as an unrecognized argument); give the flag and its value as two items"
    )
    if r.flag in SECRET_FLAGS:
        msg += f", and never on the command line: {r.flag} carries a secret; {SECRET_FLAGS[r.flag]}"
    elif r.flag in MANAGED:
        msg += f", and not at all: {r.flag} is managed by the stack (set {MANAGED[r.flag]})"
    return msg


def problems(args: Sequence[str], *, managed_allowed: bool = False) -> list[tuple[int, str]]:
    """(index, message) for every argument in `args` the stack refuses, read as vLLM reads it.

    Refused in any spelling vLLM resolves (exact, `=` form, `_` spelling, unique prefix, short
    option, dotted form): secret flags, managed flags (managed_allowed=False), --config, --help,
    flags removed upstream, an invalid --dtype; also ambiguous prefixes (vLLM refuses them) and `--`.
    Every token that looks like an option is checked, even where vLLM would take it as a value.

    managed_allowed=True checks a full rendered argv (managed flags legitimately present),
    but then refuses a managed flag given twice (in any spellings).
    """
    out: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    values = {o.index: o.values for o in occurrences(args)}
    for i, arg in enumerate(args):
        if not arg.startswith("-"):
            continue
        if arg == END_OF_OPTIONS:
            out.append(
                (
                    i,
                    (
                        "-- ends vLLM's options: vLLM reads every later argument as a positional and "
                        "refuses them (unrecognized arguments)"
                    ),
                )
            )
            continue
        r = lookup(arg)
        if r.ambiguous:
            out.append((i, _ambiguous_message(r)))
            continue
        if r.flag is None:
            if any(c.isspace() for c in arg):
                msg = _whitespace_message(arg)
                if msg:
                    out.append((i, msg))
            if r.positional:
                continue
        name = r.flag or _spelling(arg)
        via = "" if r.flag is None or r.exact else f"{r.shown} resolves to {name} in vLLM; "
        if name in SECRET_FLAGS:
            out.append((i, f"{via}{name} carries a secret on the command line; {SECRET_FLAGS[name]}"))
        elif r.flag is None and name in REMOVED:
            out.append((i, f"{name}: {REMOVED[name]}"))
        elif name in CONTROL_FLAGS:
            out.append((i, f"{via}{name}: {CONTROL_FLAGS[name]}"))
        elif name == "--dtype":
            vals = values.get(i, ())
            value = vals[0] if vals else None
            if value not in DTYPE_CHOICES:
                hint = " (FP8 is --quantization fp8 / --kv-cache-dtype fp8)" if value and "fp8" in value else ""
                out.append((i, f"{via}--dtype {value} is not valid; allowed: {', '.join(DTYPE_CHOICES)}{hint}"))
        elif name in MANAGED:
            if not managed_allowed:
                out.append(
                    (
                        i,
                        (
                            f"{via}{name} is managed by the stack (set {MANAGED[name]}); repeating it "
                            "would silently override the typed value"
                        ),
                    )
                )
            elif name in seen:
                out.append(
                    (i, (f"{via}{name} given twice (argument {seen[name]} and {i}); the last one would win silently"))
                )
        seen.setdefault(name, i)
    return out
