"""The one quoting function per target language. Every config-derived value that reaches a
shell command, a systemd unit, an nginx directive, a URL or an SSH URL goes through here.

The config grammars (`grammar.py`) already refuse values a consumer would misread; these
functions make the syntax safe by construction anyway, so a renderer that forgets to
validate still cannot emit a second command, a second directive or a second unit line.
YAML and JSON never need this: they are written by `yaml.safe_dump`/`json.dumps` from data.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from typing import Iterable

from .grammar import URL_PATH_RE, has_control, ip_literal, is_dns_name, is_posix_user


class QuotingError(ValueError):
    """A value that has no safe spelling in the target language."""


def _no_control(value: str, where: str) -> str:
    if has_control(value):
        raise QuotingError(f"{where} values may not contain control characters (newline, NUL, ...): {value!r}")
    return value


# --- POSIX shell (bash scripts, pulumi-command `create`/`delete` strings) ---------------------


def sh(value: object) -> str:
    """One shell word, whatever `value` holds (shlex.quote: single quotes, `'"'"'` for `'`)."""
    return shlex.quote(str(value))


def sh_join(argv: Iterable[object]) -> str:
    """A command line whose words bash splits back into exactly `argv`."""
    return " ".join(sh(a) for a in argv)


# --- systemd unit files (systemd.syntax(7), systemd.exec(5)) ------------------


def unit_value(value: str) -> str:
    """A unit setting's value: one line, `%` doubled (it starts a specifier)."""
    return _no_control(value, "unit").replace("%", "%%")


def unit_env(key: str, value: str) -> str:
    """`Environment=` line; double-quoted by systemd's rules when the pair needs it."""
    pair = _no_control(f"{key}={value}", "unit")
    if any(c in pair for c in " \t\"'\\"):
        pair = '"' + pair.replace("\\", "\\\\").replace('"', '\\"') + '"'
    # No `$` escaping: systemd does not expand variables in Environment= (systemd.exec(5)).
    return "Environment=" + pair.replace("%", "%%")


# --- nginx -------------------------------------------------------------------------------------

_NGINX_BARE = re.compile(r"^[A-Za-z0-9._~/:@+*=,-]+$")


def nginx(value: str) -> str:
    """One nginx directive argument. A bare word when it is one; otherwise double-quoted with
    `\\` and `"` escaped. `$` is refused: nginx expands variables inside quotes too and has no
    escape for it in most directives; `{`, `}`, `;` are only safe inside quotes."""
    _no_control(value, "nginx")
    if not value:
        return '""'
    if "$" in value:
        raise QuotingError(f"nginx values may not contain `$` (variable expansion): {value!r}")
    if _NGINX_BARE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- URLs --------------------------------------------------------------------------------------------


def url_host(address: str) -> str:
    """The host part of a URL or `host:port`: IPv6 in brackets; refuses anything that is not an
    IP address or an RFC 1123 name (so no `@`, `/`, `#`, `%` can move the authority)."""
    ip = ip_literal(address)
    if ip is not None:
        return f"[{ip.compressed}]" if ip.version == 6 else ip.compressed
    if not is_dns_name(address):
        raise QuotingError(f"{address!r} is neither an IP address (without zone) nor a DNS name")
    return address


def host_port(address: str, port: int) -> str:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise QuotingError(f"{port!r} is not a TCP port")
    return f"{url_host(address)}:{port}"


def http_url(address: str, port: int, path: str = "") -> str:
    if path and not URL_PATH_RE.fullmatch(path):
        raise QuotingError(f"{path!r} is not a plain URL path")
    return f"http://{host_port(address, port)}{path}"


def ssh_url(user: str, address: str, port: int) -> str:
    """`ssh://user@host:port` as the Docker provider takes it; the user is a POSIX name, so it
    cannot start an ssh option (`-oProxyCommand=...`) or carry `@`."""
    if not is_posix_user(user):
        raise QuotingError(f"{user!r} is not a POSIX user name")
    return f"ssh://{user}@{host_port(address, port)}"


def is_unspecified(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return False
