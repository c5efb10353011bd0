"""The grammar of every free-text config value, checked once at load time.

Renderers put config values into bash, systemd units, nginx, YAML and SSH URLs. Quoting
(`quoting.py`) keeps a value from changing the syntax around it; these grammars keep a value
from being something its consumer would misread in the first place (an IPv6 zone id carrying
`;`, a user name that is an ssh option, a cron line nginx never sees but KEDA rejects at apply
time). Each grammar is a `typing.Annotated` string type with one validator whose message says
what is allowed; `GRAMMARS` lists them for the README's config reference and for the tests,
which count the string fields of the config model and set each to hostile values.

Sources: RFC 1123 section 2.1 (host names), RFC 3696 section 2 (a TLD is not all-numeric),
POSIX.1-2017 3.437 plus Debian's adduser NAME_REGEX (user names), huggingface_hub
`validate_repo_id` (repo ids), the distribution/reference grammar (OCI image references),
crontab(5) as read by robfig/cron's standard parser that KEDA's cron scaler uses, IANA tzdata,
and Kubernetes' apimachinery `resource.Quantity` and `IsDNS1123Subdomain`.
"""

from __future__ import annotations

import ipaddress
import re
import zoneinfo
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Callable

from pydantic import AfterValidator, WithJsonSchema

# --- host names and addresses ---------------------------------------------------------------

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
_WILDCARD_RE = re.compile(rf"^\*\.(?=.{{1,251}}$){_LABEL}(?:\.{_LABEL})+$")
_POSIX_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
#: A URL path as the stack writes and accepts it: no query, fragment, `%` escapes or `$`.
URL_PATH_RE = re.compile(r"/[A-Za-z0-9._~/-]*")


def has_control(value: str) -> bool:
    """A C0 control character or DEL: a second line in a unit, a script, YAML or nginx."""
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)


def is_posix_user(value: str) -> bool:
    return bool(_POSIX_USER_RE.fullmatch(value))


def is_dns_name(value: str) -> bool:
    """RFC 1123 host name; the last label may not be all digits (RFC 3696), so `300.1.1.1` is
    neither an address nor a name."""
    return bool(_DNS_RE.fullmatch(value)) and not value.rsplit(".", 1)[-1].isdigit()


def ip_literal(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IPv4 or IPv6 address without a zone id (`fe80::1%eth0` is refused: the zone is free
    text that reaches nginx and shells), or None."""
    if "%" in value:
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def check_host_address(value: str) -> str:
    if ip_literal(value) is None and not is_dns_name(value):
        raise ValueError("must be an IPv4 address, an IPv6 address without a zone id, or an RFC 1123 DNS name")
    return value


def check_domain(value: str) -> str:
    if not is_dns_name(value) and not (_WILDCARD_RE.fullmatch(value) and is_dns_name(value[2:])):
        raise ValueError("must be an RFC 1123 DNS name, or a wildcard `*.` followed by one with at least two labels")
    return value


def check_posix_user(value: str) -> str:
    if not is_posix_user(value):
        raise ValueError("must be a POSIX user name: a lowercase letter or `_`, then up to 31 of a-z 0-9 _ -")
    return value


def check_host_port(value: str) -> str:
    """`host:port` as Prometheus' static_configs take it (`[v6]:port` for IPv6)."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([^:\[\]]+):([0-9]{1,5})", value)
    if m:
        host = m.group(1) or m.group(3)
        port = int(m.group(2) or m.group(4))
        six = m.group(1) is not None
        addr = ip_literal(host)
        host_ok = (
            (addr is not None and addr.version == 6)
            if six
            else ((addr is not None and addr.version == 4) or is_dns_name(host))
        )
        if host_ok and 0 < port < 65536:
            return value
    raise ValueError("must be `host:port` (host an IPv4 address, `[IPv6]` or an RFC 1123 DNS name; port 1-65535)")


def check_http_url(value: str) -> str:
    """`http(s)://host[:port][/path]` with a host that passes `check_host_address`."""
    m = re.fullmatch(rf"(https?)://(\[[0-9A-Fa-f:.]+\]|[^/:\[\]]+)(?::([0-9]{{1,5}}))?({URL_PATH_RE.pattern})?", value)
    if m:
        host = m.group(2).strip("[]")
        port = int(m.group(3)) if m.group(3) else 1
        if (ip_literal(host) is not None or is_dns_name(host)) and 0 < port < 65536:
            return value
    raise ValueError(
        "must be an http:// or https:// URL: host (IP, [IPv6] or DNS name), optional :port, "
        "optional path of A-Z a-z 0-9 . _ ~ / -"
    )


# --- model references and images ----------------------------------------------------------------

_HF_PART = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9])?"
_HF_RE = re.compile(rf"^(?:{_HF_PART}/)?{_HF_PART}$")
_PATH_RE = re.compile(r"^/[A-Za-z0-9._+@=-]+(?:/[A-Za-z0-9._+@=-]+)*/?$")


def is_abs_path(value: str) -> bool:
    """An absolute path of safe characters with no `.`/`..` segment and no `//`."""
    return (
        bool(_PATH_RE.fullmatch(value))
        and len(value) <= 4096
        and not any(seg in (".", "..") for seg in value.split("/"))
    )


def check_model_ref(value: str) -> str:
    if value.startswith("/"):
        if is_abs_path(value):
            return value
        raise ValueError(
            "an absolute path must be letters, digits and . _ + @ = - between single `/`, with no `.` or `..` segment"
        )
    if _HF_RE.fullmatch(value) and "--" not in value and ".." not in value and not value.endswith(".git"):
        return value
    raise ValueError(
        "must be a Hugging Face repo id (`org/name`: letters, digits, - _ . ; no `--` or `..`; "
        "at most 96 per part) or an absolute path"
    )


_REVISION_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,98}[A-Za-z0-9])?$")


def check_revision(value: str) -> str:
    """A Hub revision that is one path segment: a branch, a tag or a commit sha (no `/`, no `..`)."""
    if _REVISION_RE.fullmatch(value) and ".." not in value:
        return value
    raise ValueError("must be a branch, tag or commit sha of letters, digits and - _ . (no `/` or `..`; at most 100)")


_OCI_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_OCI_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:]+\])(?::[0-9]{{1,5}})?"
_OCI_RE = re.compile(
    rf"^(?:(?P<domain>{_OCI_DOMAIN})/)?(?P<path>{_OCI_COMPONENT}(?:/{_OCI_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$",
    re.ASCII,
)


def check_image(value: str) -> str:
    """distribution/reference: `[registry[:port]/]path[:tag][@algo:hex]`, name at most 255."""
    m = _OCI_RE.fullmatch(value)
    if m:
        name = (m.group("domain") + "/" if m.group("domain") else "") + m.group("path")
        # A first component with a dot, colon or `localhost` is a registry (reference.go splitDomain).
        if len(name) <= 255:
            return value
    raise ValueError(
        "must be an OCI image reference `[registry[:port]/]path[:tag][@sha256:hex]` (lowercase path components)"
    )


# --- schedules, durations, sizes --------------------------------------------------------------------

_CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)


def _cron_value(text: str, lo: int, hi: int, names: tuple[str, ...], what: str) -> int:
    low = text.lower()
    if low in names:
        return names.index(low) + (lo if what == "month" else 0)
    if not re.fullmatch(r"[0-9]{1,2}", text) or not lo <= int(text) <= hi:
        raise ValueError(f"cron {what} {text!r} is outside {lo}-{hi}")
    return int(text)


def check_cron(value: str) -> str:
    """Five fields (minute hour day-of-month month day-of-week): `*`, numbers, names, `a-b`, `/step`, lists."""
    fields = value.split(" ")
    if len(fields) != 5 or not all(fields):
        raise ValueError("must be a cron expression of five fields separated by single spaces, e.g. `45 8 * * 1-5`")
    for text, (what, lo, hi, names) in zip(fields, _CRON_FIELDS):
        for item in text.split(","):
            base, _, step = item.partition("/")
            if step and (not re.fullmatch(r"[0-9]{1,2}", step) or int(step) == 0):
                raise ValueError(f"cron {what} step {step!r} must be a number from 1 to 99")
            if base == "*":
                continue
            a, _, b = base.partition("-")
            start = _cron_value(a, lo, hi, names, what)
            if b and _cron_value(b, lo, hi, names, what) < start:
                raise ValueError(f"cron {what} range {base!r} runs backwards")
    return value


@lru_cache(maxsize=1)
def timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def check_timezone(value: str) -> str:
    if value not in timezones():
        raise ValueError("must be an IANA time zone name such as `UTC` or `Europe/Berlin`")
    return value


_QUANTITY_RE = re.compile(r"^(?P<num>[0-9]{1,15}(?:\.[0-9]{1,6})?)(?P<unit>Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_QUANTITY_UNITS = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def quantity_bytes(value: str) -> float:
    m = _QUANTITY_RE.fullmatch(value)
    if not m:
        raise ValueError(value)
    return float(m.group("num")) * _QUANTITY_UNITS[m.group("unit")]


def check_storage_quantity(value: str) -> str:
    """A positive Kubernetes quantity in bytes (`500Gi`, `1Ti`, `200G`), at most 1 EiB."""
    try:
        size = quantity_bytes(value)
    except ValueError:
        size = -1
    if not 0 < size <= 2**60:
        raise ValueError(
            "must be a positive Kubernetes storage quantity such as `500Gi` or `1Ti` "
            "(number, optional suffix Ki Mi Gi Ti Pi Ei k M G T P E; at most 1Ei)"
        )
    return value


def check_dns_subdomain(value: str) -> str:
    """Kubernetes object names such as StorageClass: lowercase RFC 1123 subdomain, at most 253."""
    if value != value.lower() or not _DNS_RE.fullmatch(value):
        raise ValueError("must be a lowercase RFC 1123 subdomain (a-z 0-9 - and `.`, at most 253 characters)")
    return value


_NGINX_SIZE_RE = re.compile(r"^(?P<num>[0-9]{1,13})(?P<unit>[kKmMgG]?)$")
NGINX_SIZE_MAX = 2**40  # 1 TiB; nginx parses sizes into off_t, a body this big is a mistake anyway


def check_nginx_size(value: str) -> str:
    m = _NGINX_SIZE_RE.fullmatch(value)
    scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}
    if not m or int(m.group("num")) * scale[m.group("unit").lower()] > NGINX_SIZE_MAX:
        raise ValueError(
            "must be an nginx size: a number with an optional k, m or g suffix, at most 1 TiB (e.g. `50m`)"
        )
    return value


def check_duration(value: str) -> str:
    """A Prometheus duration in one unit (`90s`, `5m`, `1h`), at most six digits."""
    if not re.fullmatch(r"[0-9]{1,6}[smh]", value):
        raise ValueError("must be a duration: 1-6 digits and one of s, m, h (e.g. `5m`)")
    return value


def check_extra_arg(value: str) -> str:
    """One argv element for vLLM: printable, no control characters (a newline in a systemd
    ExecStart or a YAML list item is a second line, not part of the value)."""
    if not value or len(value) > 8192 or has_control(value):
        raise ValueError("must be 1-8192 characters with no control characters (newline, tab, NUL)")
    return value


# --- the types ---------------------------------------------------------------------------------------


NAME_RE = r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"


def check_name(value: str) -> str:
    """Model and host names: they become resource names, Kubernetes labels, unit and file names."""
    if not re.fullmatch(NAME_RE, value):
        raise ValueError("must be 1-40 of a-z 0-9 and `-`, starting and ending with a letter or digit")
    return value


_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9._%+-]{1,64}")


def check_email(value: str) -> str:
    """An email address `local@domain` (alert receivers): dot-atom local part, a DNS domain."""
    local, sep, domain = value.partition("@")
    if not sep or not _EMAIL_LOCAL.fullmatch(local) or "." not in domain:
        raise ValueError("must be an email address `local@domain` (local part: A-Z a-z 0-9 . _ % + -)")
    check_domain(domain)
    return value


@dataclass(frozen=True)
class Grammar:
    """One named grammar: the check, its length bound and the sentence the README prints."""

    name: str
    check: Callable[[str], str]
    text: str
    max_length: int

    def __call__(self, value: str) -> str:
        if len(value) > self.max_length:
            raise ValueError(f"is longer than {self.max_length} characters")
        return self.check(value)

    @property
    def validator(self) -> AfterValidator:
        return AfterValidator(self)

    @property
    def schema(self) -> WithJsonSchema:
        return WithJsonSchema({"type": "string", "maxLength": self.max_length, "description": self.text})


GRAMMARS = {
    g.name: g
    for g in (
        Grammar("name", check_name, "1-40 of `a-z 0-9 -`, starting and ending alphanumeric", 40),
        Grammar("host address", check_host_address, "IPv4, IPv6 without zone id, or RFC 1123 DNS name", 253),
        Grammar("POSIX user", check_posix_user, "POSIX user name `[a-z_][a-z0-9_-]{0,31}`", 32),
        Grammar("domain", check_domain, "RFC 1123 DNS name, or `*.` + a name of two or more labels", 253),
        Grammar("host:port", check_host_port, "`host:port` (IPv4, `[IPv6]` or DNS name; port 1-65535)", 260),
        Grammar("http URL", check_http_url, "`http(s)://host[:port][/path]`", 2048),
        Grammar("model reference", check_model_ref, "Hugging Face repo id `org/name` or an absolute path", 4096),
        Grammar("revision", check_revision, "Hub revision: a branch, tag or commit sha (one path segment)", 100),
        Grammar("OCI image", check_image, "OCI image reference `[registry/]path[:tag][@sha256:…]`", 512),
        Grammar("cron", check_cron, "five-field cron expression (`*`, numbers, names, ranges, steps, lists)", 256),
        Grammar("IANA timezone", check_timezone, "IANA time zone name (`UTC`, `Europe/Berlin`)", 64),
        Grammar("storage quantity", check_storage_quantity, "positive Kubernetes quantity (`500Gi`)", 32),
        Grammar("DNS subdomain", check_dns_subdomain, "lowercase RFC 1123 subdomain", 253),
        Grammar("nginx size", check_nginx_size, "nginx size `<n>[k|m|g]`, at most 1 TiB", 16),
        Grammar("email", check_email, "email address `local@domain`", 254),
        Grammar("duration", check_duration, "Prometheus duration `<n>s`, `<n>m` or `<n>h`", 7),
        Grammar("vLLM argument", check_extra_arg, "printable text, no control characters, 1-8192 characters", 8192),
    )
}
_G = GRAMMARS

Name = Annotated[str, _G["name"].validator, _G["name"].schema]
HostAddress = Annotated[str, _G["host address"].validator, _G["host address"].schema]
PosixUser = Annotated[str, _G["POSIX user"].validator, _G["POSIX user"].schema]
Domain = Annotated[str, _G["domain"].validator, _G["domain"].schema]
HostPort = Annotated[str, _G["host:port"].validator, _G["host:port"].schema]
HttpUrl = Annotated[str, _G["http URL"].validator, _G["http URL"].schema]
ModelRef = Annotated[str, _G["model reference"].validator, _G["model reference"].schema]
OciImage = Annotated[str, _G["OCI image"].validator, _G["OCI image"].schema]
Revision = Annotated[str, _G["revision"].validator, _G["revision"].schema]
Cron = Annotated[str, _G["cron"].validator, _G["cron"].schema]
Timezone = Annotated[str, _G["IANA timezone"].validator, _G["IANA timezone"].schema]
StorageQuantity = Annotated[str, _G["storage quantity"].validator, _G["storage quantity"].schema]
DnsSubdomain = Annotated[str, _G["DNS subdomain"].validator, _G["DNS subdomain"].schema]
NginxSize = Annotated[str, _G["nginx size"].validator, _G["nginx size"].schema]
Duration = Annotated[str, _G["duration"].validator, _G["duration"].schema]
Email = Annotated[str, _G["email"].validator, _G["email"].schema]
ExtraArg = Annotated[str, _G["vLLM argument"].validator, _G["vLLM argument"].schema]
