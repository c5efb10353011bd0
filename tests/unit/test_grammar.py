"""Each grammar accepts what its consumer accepts and refuses what it would misread."""

from __future__ import annotations

import pytest

from vllm_stack import grammar as g
from vllm_stack import quoting

CASES = {
    g.check_host_address: (
        ["10.0.0.10", "2001:db8::1", "::1", "gpu-1", "gpu-1.dc.example.com", "GPU-1.Example.COM"],
        [
            "fe80::1%eth0",
            "fe80::1%;}$(id)",
            "10.0.0.1\nid",
            "-oProxyCommand=id",
            "a b",
            "a_b.example",
            "",
            "300.1.1.1",
            "1.2.3.4.5",
            "host.",
            "a..b",
            "-a.example",
            "ex\u00e4mple.com",
            "x" * 64 + ".com",
        ],
    ),
    g.check_posix_user: (
        ["ubuntu", "_svc", "deploy-bot", "a" * 32],
        ["root\n", "-oProxyCommand=id", "Ubuntu", "user@host", "9user", "a" * 33, "", "u;id"],
    ),
    g.check_domain: (
        ["localhost", "vllm.example.com", "*.example.com", "llm-1.internal"],
        [
            "*.com",
            "a;b",
            "a}b",
            "$host",
            "example.com;return 200",
            "*example.com",
            "x.*.example.com",
            "",
            "exa mple.com",
            "example.com\n",
        ],
    ),
    g.check_host_port: (
        ["alertmanager:9093", "10.0.0.5:9093", "[::1]:9093", "am.monitoring.svc:9093"],
        ["alertmanager", ":9093", "am:0", "am:65536", "::1:9093", "[10.0.0.1]:9093", "am:9093/x", "a b:1", "am:9093\n"],
    ),
    g.check_http_url: (
        ["http://prometheus-operated.monitoring.svc:9090", "https://prom.example.com/api", "http://[::1]:9090"],
        [
            "ftp://x",
            "http://",
            "http://a b",
            "http://user@host",
            "http://h:0",
            "http://h/x?y",
            "javascript:x",
            "http://h:9090/${x}",
        ],
    ),
    g.check_model_ref: (
        ["meta-llama/Llama-3.1-8B-Instruct", "gpt2", "Qwen/Qwen2.5-7B", "/models/llama-8b", "/srv/m/v1.2/"],
        [
            "../etc/passwd",
            "/models/../etc",
            "/models//x",
            "a/b/c",
            "org--x/m",
            "org/m.git",
            "org/m;id",
            "/models/x y",
            "/models/$(id)",
            "",
            "org/" + "x" * 97,
            "org/-x",
            "relative/../x",
        ],
    ),
    g.check_image: (
        [
            "vllm/vllm-openai:v0.33.0",
            "nginx:1.27.3",
            "ghcr.io/org/img@sha256:" + "a" * 64,
            "registry.example.com:5000/team/vllm:v1",
            "nvcr.io/nvidia/k8s/dcgm-exporter:4.2.3-4.1.1-ubuntu22.04",
        ],
        [
            "Vllm/VLLM",
            "vllm:",
            "vllm:tag with space",
            "vllm;id",
            "vllm\n:tag",
            "vllm@sha256:short",
            "",
            ":tag",
            "a" * 300,
        ],
    ),
    g.check_cron: (
        ["45 8 * * 1-5", "0 19 * * mon-fri", "*/15 * * * *", "0 0 1,15 jan-jun 0", "5 4 * * 7"],
        [
            "* * * *",
            "61 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "a b c d e",
            "* * * * *\n* * * * *",
            "*  * * * *",
            "@daily",
            "\u00b2 * * * *",
        ],
    ),
    g.check_timezone: (
        ["UTC", "Europe/Berlin", "America/New_York"],
        ["Mars/Olympus", "../../etc/passwd", "utc ", "", "Europe/Berlin\n"],
    ),
    g.check_storage_quantity: (
        ["500Gi", "1Ti", "200G", "1.5Ti", "1073741824"],
        ["-5Gi", "0", "0Gi", "5GB", "Gi", "1e3", "2Ei", "five"],
    ),
    g.check_dns_subdomain: (["gp3", "fast-ssd.storage.k8s.io"], ["GP3", "a_b", "-a", "a;b", ""]),
    g.check_nginx_size: (["50m", "1g", "1024", "512K"], ["50mb", "-1", "1025g", "9" * 14, "1 m", "50m;"]),
    g.check_email: (
        ["oncall@example.com", "a.b+c_d%e-f@mail.example.org"],
        ["oncall", "a@b", "@example.com", "a b@example.com", "a@exa mple.com", "a@example.com\n", "é@example.com"],
    ),
    g.check_duration: (["5m", "90s", "1h", "0s"], ["5", "5d", "1h30m", "9999999s", "-1m", "5m\n"]),
    g.check_extra_arg: (
        ["--enable-chunked-prefill", "--chat-template={{ x }};$(id)`'\"%", "\u00e9"],
        ["", "--x\n--host=0.0.0.0", "--x\r", "a\x00b", "a\tb", "x" * 8193],
    ),
    g.check_revision: (
        ["main", "v1.0", "0123456789abcdef0123456789abcdef01234567", "refs_pr_1", "a"],
        ["refs/pr/1", "..", "a..b", "-main", "main-", "", "a" * 101, "m ain", "main\n"],
    ),
    g.check_name: (["llama-8b", "a", "m7", "7b"], ["-a", "a-", "A", "a_b", "a" * 41, "a.b", ""]),
}


@pytest.mark.parametrize("check", list(CASES), ids=lambda c: c.__name__)
def test_grammar_accepts_and_refuses(check):
    good, bad = CASES[check]
    for value in good:
        assert check(value) == value
    for value in bad:
        with pytest.raises(ValueError):
            check(value)
            raise AssertionError(f"{check.__name__} accepted {value!r}")


def test_every_grammar_has_cases():
    assert {gr.check for gr in g.GRAMMARS.values()} == set(CASES)


def test_grammar_length_bound_comes_first():
    gr = g.GRAMMARS["host address"]
    with pytest.raises(ValueError, match="longer than 253"):
        gr("a" * 254)


@pytest.mark.parametrize(
    "value, want", [("plain", "plain"), ("a b", "'a b'"), ("it's", "'it'\"'\"'s'"), ("$(id)", "'$(id)'"), ("", "''")]
)
def test_sh_quotes_one_word(value, want):
    assert quoting.sh(value) == want


@pytest.mark.parametrize(
    "value, want",
    [
        ("/etc/nginx/x.pem", "/etc/nginx/x.pem"),
        ("*.example.com", "*.example.com"),
        ("a;b", '"a;b"'),
        ('a"b', '"a\\"b"'),
        ("a}b{", '"a}b{"'),
    ],
)
def test_nginx_quotes_or_refuses(value, want):
    assert quoting.nginx(value) == want


@pytest.mark.parametrize("value", ["$host", "a\nb", "x\x00"])
def test_nginx_refuses_variables_and_control(value):
    with pytest.raises(quoting.QuotingError):
        quoting.nginx(value)


def test_urls_bracket_ipv6_and_refuse_zones():
    assert quoting.http_url("2001:db8::1", 9090) == "http://[2001:db8::1]:9090"
    assert quoting.ssh_url("ubuntu", "10.0.0.1", 22) == "ssh://ubuntu@10.0.0.1:22"
    assert quoting.ssh_url("ubuntu", "::1", 2222) == "ssh://ubuntu@[::1]:2222"
    for bad in (
        ("ubuntu", "fe80::1%eth0", 22),
        ("-oProxyCommand=id", "h", 22),
        ("u", "h@evil", 22),
        ("u", "h", True),
        ("u", "h", 0),
    ):
        with pytest.raises(quoting.QuotingError):
            quoting.ssh_url(*bad)


def test_unit_values_escape_specifiers_and_stay_one_line():
    assert quoting.unit_env("K", "a b%") == 'Environment="K=a b%%"'
    with pytest.raises(quoting.QuotingError):
        quoting.unit_value("a\nExecStartPre=/bin/id")
