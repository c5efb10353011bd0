"""The nginx front renderer, on its text: routes, pools, TLS, key gate, logging, validation."""

from __future__ import annotations

import re

import pytest

from vllm_stack import defaults as D
from vllm_stack.endpoints import Backend
from vllm_stack.loader import parse_config
from vllm_stack.render.drain import render_drain_script
from vllm_stack.render.nginx import (
    FrontListen,
    FrontRenderError,
    NginxPaths,
    render_api_keys_map,
    render_front,
    render_upstream_auth,
    upstream_name,
)

KEY_A = "sk-test-aaaaaaaaaaaaaaaa"
KEY_B = "Zm9vYmFyLmJhei5xdXV4.plus+slash/=="


def make_cfg(models=("alpha", "beta"), default: str | None = None, **front):
    specs = [{"name": n, "model": "mistralai/Mistral-7B-v0.3", "gpu": "L40S", "default": n == default} for n in models]
    raw = {"environment": "prod", "platform": "kubernetes", "models": specs}
    if front:
        raw["front"] = front
    return parse_config(raw)


PROD_BACKENDS = (
    Backend("alpha", "10.0.0.1", 8000, "onDemand"),
    Backend("alpha", "10.0.0.2", 8000, "spot"),
    Backend("alpha", "10.0.0.3", 8000, "spot", state="down"),
    Backend("beta", "10.0.1.1", 8001, "onDemand"),
    Backend("beta", "vllm-beta-1.vllm.svc.cluster.local", 8001, "spot", state="backup"),
)


@pytest.fixture(scope="module")
def prod():
    return render_front(make_cfg(default="beta"), PROD_BACKENDS)


def blocks(text: str, opener: str) -> dict[str, str]:
    """`location /x/ { ... }` bodies keyed by their argument (one nesting level of `if`)."""
    out = {}
    for m in re.finditer(rf"^\s*{opener}\s+([^{{\s]+(?:\s+[^{{\s]+)?)\s*\{{", text, re.M):
        depth, i = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        out[m.group(1)] = text[m.end() : i - 1]
    return out


def directive(body: str, name: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"^\s*{name}\s+([^;]*);", body, re.M)]


# --------------------------------------------------------------------------- files and pools


def test_files_are_nginx_conf_and_one_upstream_per_model(prod):
    assert sorted(prod) == ["nginx.conf", "upstreams/alpha.conf", "upstreams/beta.conf"]
    paths = NginxPaths()
    for m in ("alpha", "beta"):
        assert f"include {paths.upstream_file(m)};" in prod["nginx.conf"]
        assert f"upstream {upstream_name(m)} {{" in prod[f"upstreams/{m}.conf"]
        assert not re.search(r"^\s*upstream\s", prod["nginx.conf"], re.M)  # pools only in the drain-edited files


def test_upstreams_use_least_conn_before_keepalive_with_shared_zone(prod):
    for m in ("alpha", "beta"):
        body = blocks(prod[f"upstreams/{m}.conf"], "upstream")[f"vllm_{m}"]
        names = [
            line.split()[0].rstrip(";")
            for line in body.splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
        assert names.index("zone") < names.index("least_conn") < names.index("keepalive")
        assert directive(body, "keepalive") == [str(D.UPSTREAM_KEEPALIVE)]
        assert directive(body, "keepalive_timeout") == [f"{D.UPSTREAM_KEEPALIVE_TIMEOUT_SEC}s"]
        assert directive(body, "zone") == [f"vllm_{m} {D.UPSTREAM_ZONE_SIZE}"]


def test_every_backend_has_one_server_line_with_fail_limits_and_state(prod):
    servers = {}
    for m in ("alpha", "beta"):
        for s in directive(prod[f"upstreams/{m}.conf"], "server"):
            servers[s.split()[0]] = s.split()[1:]
    assert len(servers) == len(PROD_BACKENDS)
    for b in PROD_BACKENDS:
        params = servers[f"{b.address}:{b.port}"]
        assert params[:2] == [f"max_fails={D.UPSTREAM_MAX_FAILS}", f"fail_timeout={D.UPSTREAM_FAIL_TIMEOUT_SEC}s"]
        assert params[2:] == ({"up": [], "down": ["down"], "backup": ["backup"]}[b.state])


def test_ipv6_backend_is_bracketed():
    files = render_front(make_cfg(models=("alpha",)), [Backend("alpha", "fd00::1", 8000)])
    assert directive(files["upstreams/alpha.conf"], "server")[0].startswith("[fd00::1]:8000 ")


# --------------------------------------------------------------------------- routes


def test_each_model_route_proxies_to_its_own_upstream(prod):
    locs = blocks(prod["nginx.conf"], "location")
    for m in ("alpha", "beta"):
        assert directive(locs[f"/{m}/v1/"], "proxy_pass") == [f"http://vllm_{m}/v1/"]


def test_plain_v1_goes_to_the_default_model(prod):
    locs = blocks(prod["nginx.conf"], "location")
    assert directive(locs["/v1/"], "proxy_pass") == ["http://vllm_beta/v1/"]
    first = render_front(make_cfg(), PROD_BACKENDS)  # no `default: true`: the first model
    assert directive(blocks(first["nginx.conf"], "location")["/v1/"], "proxy_pass") == ["http://vllm_alpha/v1/"]


def test_health_is_answered_by_nginx_and_the_rest_is_json_404(prod):
    locs = blocks(prod["nginx.conf"], "location")
    assert "proxy_pass" not in locs[f"= {D.HEALTH_PATH}"] and "return 200" in locs[f"= {D.HEALTH_PATH}"]
    assert "vllm_key_ok" not in locs[f"= {D.HEALTH_PATH}"]
    assert directive(locs["/"], "return") == ['404 \'{"error":"not found"}\'']
    proxied = [k for k, v in locs.items() if "proxy_pass" in v]
    assert sorted(proxied) == ["/alpha/v1/", "/beta/v1/", "/v1/"]


def test_proxied_locations_stream_time_out_retry_and_tag_requests(prod):
    cfg = make_cfg(default="beta")
    locs = blocks(prod["nginx.conf"], "location")
    for name in ("/alpha/v1/", "/beta/v1/", "/v1/"):
        body = locs[name]
        assert directive(body, "proxy_http_version") == ["1.1"]
        assert 'Connection ""' in directive(body, "proxy_set_header")
        assert directive(body, "proxy_buffering") == ["off"]
        assert directive(body, "proxy_cache") == ["off"]
        assert directive(body, "proxy_read_timeout") == [f"{cfg.front.read_timeout_seconds}s"]
        assert directive(body, "proxy_connect_timeout") == [f"{D.PROXY_CONNECT_TIMEOUT_SEC}s"]
        assert directive(body, "client_max_body_size") == [cfg.front.client_max_body_size]
        assert directive(body, "proxy_next_upstream") == ["error timeout http_502 http_503 non_idempotent"]
        assert directive(body, "proxy_next_upstream_tries") == [str(D.PROXY_NEXT_UPSTREAM_TRIES)]
        headers = {h.split()[0]: h.split(None, 1)[1] for h in directive(body, "proxy_set_header")}
        assert headers["X-Request-ID"] == "$vllm_request_id"
        assert headers["X-Forwarded-For"] == "$proxy_add_x_forwarded_for"
        assert headers["X-Forwarded-Proto"] == "$scheme"
        assert headers["X-Real-IP"] == "$remote_addr"
        assert headers["Host"] == "$host"
        assert "Authorization" not in headers  # the client's key passes through unless upstream_auth is set
        # prod: HSTS repeated here (a location's own add_header drops the server's)
        assert directive(body, "add_header") == [
            "X-Request-ID $vllm_request_id always",
            f'Strict-Transport-Security "{D.HSTS_HEADER}" always',
        ]


def test_key_gate_and_rate_limit_in_every_proxied_location(prod):
    conf = prod["nginx.conf"]
    assert "auth_basic" not in conf
    maps = blocks(conf, "map")
    assert directive(maps["$http_authorization $vllm_key_ok"], "include") == [NginxPaths().api_keys]
    assert directive(maps["$http_authorization $vllm_key_ok"], "default") == ["0"]
    assert directive(conf, "limit_req_zone") == [
        f"$http_authorization zone=perkey:{D.RATE_LIMIT_ZONE_SIZE} rate={D.RATE_LIMIT_PER_KEY_RPS}r/s"
    ]
    assert directive(conf, "limit_req_status") == ["429"]
    for name, body in blocks(conf, "location").items():
        if "proxy_pass" in body:
            assert "if ($vllm_key_ok = 0)" in body
            assert 'return 401 \'{"error":"Unauthorized"}\';' in body
            assert directive(body, "limit_req") == [f"zone=perkey burst={D.RATE_LIMIT_BURST} nodelay"]


def test_rate_limit_and_body_size_follow_the_config():
    files = render_front(
        make_cfg(models=("alpha",), rateLimitRps=0.5, rateLimitBurst=3, clientMaxBodySize="2m", readTimeoutSeconds=42),
        [Backend("alpha", "127.0.0.1", 9000)],
    )
    conf = files["nginx.conf"]
    assert "rate=30r/m;" in conf
    assert "limit_req zone=perkey burst=3 nodelay;" in conf
    assert set(directive(conf, "client_max_body_size")) == {"2m"}
    assert set(directive(conf, "proxy_read_timeout")) == {"42s"}


def test_json_error_pages_for_front_errors(prod):
    conf = prod["nginx.conf"]
    locs = blocks(conf, "location")
    for code in (413, 429, 502, 503, 504):
        assert f"error_page {code} @vllm_{code};" in conf
        (ret,) = directive(locs[f"@vllm_{code}"], "return")
        assert ret.startswith(f'{code} \'{{"error":')
    assert "no healthy backend for model" in directive(locs["@vllm_502"], "return")[0]
    assert directive(conf, "default_type") == ["application/json"]


def test_upstream_auth_include_replaces_the_client_key():
    paths = NginxPaths.under("/srv/front", upstream_auth=True)
    files = render_front(make_cfg(models=("alpha",)), [Backend("alpha", "127.0.0.1", 9000)], paths=paths)
    for body in blocks(files["nginx.conf"], "location").values():
        if "proxy_pass" in body:
            assert directive(body, "include") == [paths.upstream_auth]
    text = render_upstream_auth(KEY_A)
    assert directive(text, "proxy_set_header") == [f'Authorization "Bearer {KEY_A}"']
    with pytest.raises(FrontRenderError):
        render_upstream_auth('abc"; return 200 "x')


# --------------------------------------------------------------------------- TLS and listeners


def test_tls_server_settings(prod):
    conf = prod["nginx.conf"]
    assert directive(conf, "ssl_protocols") == ["TLSv1.2 TLSv1.3"]
    assert directive(conf, "ssl_protocols")[0].split() == list(D.TLS_PROTOCOLS)
    assert directive(conf, "ssl_ciphers") == [D.TLS_CIPHERS]
    assert directive(conf, "ssl_prefer_server_ciphers") == ["off"]
    assert directive(conf, "ssl_session_cache") == [D.TLS_SESSION_CACHE]
    assert directive(conf, "ssl_session_timeout") == [D.TLS_SESSION_TIMEOUT]
    assert directive(conf, "ssl_session_tickets") == ["off"]
    assert directive(conf, "ssl_certificate") == [NginxPaths().cert]
    assert directive(conf, "ssl_certificate_key") == [NginxPaths().key]
    assert directive(conf, "server_name") == ["localhost", "localhost"]
    # the stub_status listener (loopback only) comes first, then the public ones
    assert directive(conf, "listen") == [f"{D.LOOPBACK}:{D.NGINX_STATUS_PORT}", str(D.HTTP_PORT), f"{D.HTTPS_PORT} ssl"]


def test_http_redirects_to_https_with_port_only_when_not_443(prod):
    assert directive(prod["nginx.conf"], "return").count("301 https://$host$request_uri") == 1
    files = render_front(
        make_cfg(models=("alpha",), domain="llm.example.com"),
        [Backend("alpha", "127.0.0.1", 9000)],
        listen=FrontListen(bind="127.0.0.1", http_port=18080, https_port=18443),
    )
    conf = files["nginx.conf"]
    assert "return 301 https://$host:18443$request_uri;" in conf
    assert directive(conf, "listen") == [
        f"{D.LOOPBACK}:{D.NGINX_STATUS_PORT}",
        "127.0.0.1:18080",
        "127.0.0.1:18443 ssl",
    ]
    assert set(directive(conf, "server_name")) == {"llm.example.com"}


def test_tls_none_serves_plain_http_without_redirect():
    files = render_front(make_cfg(models=("alpha",), tls="none"), [Backend("alpha", "127.0.0.1", 9000)])
    conf = files["nginx.conf"]
    assert "ssl" not in conf.replace("ssl_", "")
    assert "ssl_" not in conf and "301" not in conf
    assert directive(conf, "listen") == [f"{D.LOOPBACK}:{D.NGINX_STATUS_PORT}", str(D.HTTP_PORT)]
    assert "proxy_pass http://vllm_alpha/v1/;" in conf


def test_main_context_paths_and_user():
    paths = NginxPaths.under("/srv/front")
    conf = render_front(make_cfg(models=("alpha",)), [Backend("alpha", "127.0.0.1", 9000)], paths=paths)["nginx.conf"]
    assert directive(conf, "pid") == ["/srv/front/nginx.pid"]
    assert directive(conf, "error_log") == ["/srv/front/logs/error.log warn"]
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (p,) = directive(conf, f"{kind}_temp_path")
        assert p.startswith("/srv/front/temp/")
    assert directive(conf, "user") == [D.NGINX_USER]
    assert "events {" in conf and "http {" in conf
    no_user = render_front(make_cfg(models=("alpha",)), [Backend("alpha", "127.0.0.1", 9000)], user=None)
    assert directive(no_user["nginx.conf"], "user") == []
    assert "daemon" not in conf  # tests pass -g 'daemon off;'


# --------------------------------------------------------------------------- logging and keys


def test_log_format_never_logs_credentials_or_query_strings(prod):
    conf = prod["nginx.conf"]
    m = re.search(r"log_format\s+(\S+)\s+(.*?);\n", conf, re.S)
    assert m, "no log_format"
    fmt = m.group(2)
    for var in ("$http_authorization", "$request_uri", "$request ", '$request"', "$args", "$query_string", "$http_"):
        assert var not in fmt
    assert "$vllm_request_id" in fmt
    assert directive(conf, "access_log")[0] == f"{NginxPaths().access_log} {m.group(1)}"
    assert conf.count("$http_authorization") == 2  # the map and the rate-limit key, nowhere else


def test_api_keys_map_holds_each_key_and_nothing_else():
    text = render_api_keys_map([KEY_B, KEY_A, KEY_A])
    entries = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    # anchored, case-sensitive regexes (nginx compares plain map strings ignoring case); sorted, deduplicated
    assert entries == ['"~^Bearer Zm9vYmFyLmJhei5xdXV4\\.plus\\+slash/==$" 1;', f'"~^Bearer {KEY_A}$" 1;']
    regexes = [re.compile(e[2 : e.rindex('"')]) for e in entries]
    for key in (KEY_A, KEY_B):
        assert sum(bool(r.search(f"Bearer {key}")) for r in regexes) == 1
        assert not any(r.search(f"Bearer {key.swapcase()}") for r in regexes)
        assert not any(r.search(f"Bearer {key}x") or r.search(f"xBearer {key}") or r.search(key) for r in regexes)
    assert not any(r.search(f"Bearer {KEY_B.replace('.', 'X')}") for r in regexes)  # `.` is escaped


@pytest.mark.parametrize(
    "keys",
    [
        [],
        ["short"],
        ['sk-test-aaaaaaaaaaaa"; default 1'],
        ["sk test aaaaaaaaaaaaaaaa"],
        ["sk-test-aaaaaaaaaaaaaa$x"],
        ["sk-test-aaaaaaaaaaaaaaaa\n"],
    ],
)
def test_api_keys_map_rejects_unsafe_or_weak_keys(keys):
    with pytest.raises(FrontRenderError):
        render_api_keys_map(keys)


# --------------------------------------------------------------------------- purity and validation


def test_renderer_is_deterministic():
    a = render_front(make_cfg(default="beta"), PROD_BACKENDS)
    b = render_front(make_cfg(default="beta"), list(PROD_BACKENDS))
    assert a == b
    assert render_api_keys_map([KEY_A, KEY_B]) == render_api_keys_map([KEY_B, KEY_A])
    assert render_drain_script() == render_drain_script()


def _front(**update):
    cfg = make_cfg(models=("alpha",))
    return cfg.model_copy(update={"front": cfg.front.model_copy(update=update)})


@pytest.mark.parametrize(
    "cfg_update",
    [
        {"domain": "evil.com; return 200"},
        {"domain": "a b"},
        {"domain": "x}"},
        {"client_max_body_size": "1m; autoindex on"},
    ],
)
def test_bad_front_values_are_rejected(cfg_update):
    with pytest.raises(FrontRenderError):
        render_front(_front(**cfg_update), [Backend("alpha", "127.0.0.1", 9000)])


@pytest.mark.parametrize(
    "backend",
    [
        Backend("alpha", "10.0.0.1;", 8000),
        Backend("alpha", "10.0.0.1 backup", 8000),
        Backend("alpha", "$host", 8000),
        Backend("alpha", "10.0.0.1", 0),
        Backend("alpha", "10.0.0.1", 70000),
        Backend("alpha", "10.0.0.1", 8000, state="drain"),  # type: ignore[arg-type]
        Backend("gamma", "10.0.0.1", 8000),  # not a configured model
    ],
)
def test_bad_backends_are_rejected(backend):
    with pytest.raises(FrontRenderError):
        render_front(make_cfg(models=("alpha",)), [Backend("alpha", "10.0.0.9", 8000), backend])


def test_bad_model_names_and_pools_are_rejected():
    cfg = make_cfg(models=("alpha",))
    for bad in ("Alpha", "a/b", "a;b", "v1", "health", "-a", "a" * 41):
        bad_cfg = cfg.model_copy(update={"models": (cfg.models[0].model_copy(update={"name": bad}),)})
        with pytest.raises(FrontRenderError):
            render_front(bad_cfg, [Backend(bad, "10.0.0.1", 8000)])
    with pytest.raises(FrontRenderError, match="no backend"):
        render_front(cfg, [])
    with pytest.raises(FrontRenderError, match="twice"):
        render_front(cfg, [Backend("alpha", "10.0.0.1", 8000), Backend("alpha", "10.0.0.1", 8000, state="down")])
    with pytest.raises(FrontRenderError, match="backup"):
        render_front(cfg, [Backend("alpha", "10.0.0.1", 8000, state="backup")])


def test_bad_paths_listen_and_user_are_rejected():
    cfg = make_cfg(models=("alpha",))
    bs = [Backend("alpha", "10.0.0.1", 8000)]
    for paths in (
        NginxPaths(pid="run/nginx.pid"),
        NginxPaths(cert="/etc/x y.pem"),
        NginxPaths(api_keys="/etc/k;"),
        NginxPaths(upstream_dir="/etc/../tmp"),
        NginxPaths(upstream_auth="/a/$b"),
    ):
        with pytest.raises(FrontRenderError):
            render_front(cfg, bs, paths=paths)
    with pytest.raises(FrontRenderError):
        render_front(cfg, bs, listen=FrontListen(bind="0.0.0.0; x"))
    with pytest.raises(FrontRenderError):
        render_front(cfg, bs, listen=FrontListen(https_port=0))
    with pytest.raises(FrontRenderError):
        render_front(cfg, bs, user="www-data; daemon on")


def test_drain_script_uses_the_given_nginx_and_paths():
    paths = NginxPaths.under("/srv/front")
    text = render_drain_script(paths, nginx_cmd=("docker", "exec", "vllm-front", "nginx"), drain_seconds=7)
    assert text.startswith("#!/bin/sh\n")
    assert 'docker exec vllm-front nginx -p /srv/front/ -c /srv/front/nginx.conf "$@"' in text
    assert "UPSTREAM_DIR=/srv/front/upstreams\n" in text
    assert "DEFAULT_DRAIN_SECONDS=7\n" in text
    assert "STOP_CMD" in text and "--undrain" in text
    with pytest.raises(FrontRenderError):
        render_drain_script(drain_seconds=-1)
    with pytest.raises(FrontRenderError):
        render_drain_script(nginx_cmd=())
