"""bench/: every module imports; the pure helpers (ratios, verdicts, tables, windows, the
round-robin config derivation, generated stack files) behave. Fast: no server, no subprocess."""

from __future__ import annotations

import importlib
import re

import pytest

import bench
from bench import (
    MISS,
    PASS,
    BenchResult,
    fmt_delta_ms,
    fmt_ms,
    fmt_ratio,
    loss_pct,
    md_table,
    pool,
    ratio,
    upstream_ports,
    verdict,
    write_result,
)
from bench import balancing, drain, front_overhead, plan_scaling, run_all
from bench.loadgen import LoadResult, RequestRecord
from vllm_stack import defaults as D
from vllm_stack.endpoints import Backend
from vllm_stack.loader import parse_config, split_namespaced
from vllm_stack.placement import place
from vllm_stack.render.nginx import render_upstream

pytestmark = pytest.mark.timeout(30)


def _result(latencies, ttfts=None, failures=0, wall=1.0) -> LoadResult:
    recs = [
        RequestRecord(index=i, started_s=0.01 * i, status=200, latency_s=lat, ttft_s=(ttfts[i] if ttfts else lat / 2))
        for i, lat in enumerate(latencies)
    ]
    recs += [
        RequestRecord(index=len(recs) + j, status=None, error="ReadError: x", latency_s=9.0) for j in range(failures)
    ]
    return LoadResult(requested=len(recs), concurrency=2, stream=True, wall_s=wall, deadline_hit=False, records=recs)


@pytest.mark.parametrize(
    "name",
    [
        "bench",
        "bench.loadgen",
        "bench.front_overhead",
        "bench.balancing",
        "bench.drain",
        "bench.plan_scaling",
        "bench.sizing_peers",
        "bench.run_all",
    ],
)
def test_every_bench_module_imports(name):
    mod = importlib.import_module(name)
    assert mod.__doc__
    if name not in ("bench", "bench.loadgen", "bench.run_all"):
        assert callable(mod.run) and mod.NAME in run_all.BENCHES


# --------------------------------------------------------------------------- shared helpers


def test_ratio_loss_and_verdict():
    assert ratio(2.0, 4.0) == 0.5
    assert ratio(None, 1.0) is None and ratio(1.0, None) is None and ratio(1.0, 0.0) is None
    assert loss_pct(95.0, 100.0) == pytest.approx(5.0)
    assert loss_pct(110.0, 100.0) == pytest.approx(-10.0)
    assert loss_pct(None, 100.0) is None
    assert verdict(1.0, 1.0) == PASS and verdict(1.0001, 1.0) == MISS and verdict(None, 1.0) == MISS


def test_formatting():
    assert fmt_ms(0.0123) == "12.3 ms" and fmt_ms(None) == "-"
    assert fmt_delta_ms(0.00043) == "+0.43 ms" and fmt_delta_ms(-0.001) == "-1.00 ms"
    assert fmt_ratio(1.23456) == "1.235" and fmt_ratio(None) == "-"


def test_md_table_shape_and_escaping():
    t = md_table(["a", "b"], [[1, "x|y"], ["z", None]])
    assert t.splitlines() == ["| a | b |", "|---|---|", "| 1 | x\\|y |", "| z | None |"]
    with pytest.raises(ValueError):
        md_table(["a", "b"], [[1]])


def test_pool_merges_runs():
    p = pool([_result([0.1, 0.2, 0.3], wall=1.0), _result([0.4, 0.5], failures=1, wall=1.0)])
    assert p.successes == 5 and p.failures == 1 and p.wall_s == 2.0
    assert p.throughput_rps == 2.5
    assert p.latency_p50 == pytest.approx(0.3)  # failed records are not in the percentiles
    assert p.latency_mean == pytest.approx(0.3)
    assert p.latency_p99 == pytest.approx(0.496)
    assert p.to_json()["throughput_rps"] == 2.5


def test_write_result_and_markdown(tmp_path):
    r = BenchResult("x", "Title", "| a |\n|---|", {"k": 1}, ["note one"])
    path = write_result(r, tmp_path)
    assert path == tmp_path / "x.json"
    doc = __import__("json").loads(path.read_text())
    assert doc["name"] == "x" and doc["k"] == 1 and doc["table_md"] == "| a |\n|---|" and doc["machine"]["cpus"]
    assert r.markdown() == "### Title\n\n| a |\n|---|\n\n- note one\n"


def test_upstream_ports_of_a_rendered_upstream():
    text = render_upstream(
        "alpha", [Backend("alpha", "127.0.0.1", 8001, "onDemand"), Backend("alpha", "127.0.0.1", 8002, "spot", "down")]
    )
    assert upstream_ports(text) == [8001, 8002]


# --------------------------------------------------------------------------- front overhead


def _pooled(p50, p95, rps, ttft50=None, ttft95=None):
    return bench.Pooled(
        successes=int(rps * 10),
        failures=0,
        wall_s=10.0,
        latency_p50=p50,
        latency_p95=p95,
        ttft_p50=ttft50,
        ttft_p95=ttft95,
    )


def test_front_overhead_rows_pass_and_miss():
    direct = _pooled(0.200, 0.210, 40.0, 0.050, 0.055)
    ok = _pooled(0.2009, 0.212, 39.0, 0.052, 0.056)  # +0.9 ms, -2.5 %, 1.04x
    rows = front_overhead.compare_rows("s", True, direct, ok)
    by_metric = {r[1]: r for r in rows}
    assert set(by_metric) == {"latency p50", "latency p95", "throughput", "first chunk p50", "first chunk p95"}
    assert all(len(r) == len(front_overhead.HEADERS) for r in rows)
    assert by_metric["latency p50"][5] == "+0.90 ms" and by_metric["latency p50"][7] == PASS
    assert by_metric["throughput"][5] == "-2.5 %" and by_metric["throughput"][7] == PASS
    assert by_metric["first chunk p50"][4] == "1.040" and by_metric["first chunk p50"][7] == PASS
    bad = _pooled(0.2015, 0.25, 37.0, 0.0530, 0.08)  # +1.5 ms, -7.5 %, 1.06x
    by_metric = {r[1]: r for r in front_overhead.compare_rows("s", True, direct, bad)}
    assert [by_metric[m][7] for m in ("latency p50", "throughput", "first chunk p50")] == [MISS] * 3
    assert len(front_overhead.compare_rows("s", False, direct, ok)) == 3  # no first-chunk rows


def test_front_overhead_interleaves_arms():
    assert front_overhead.interleave(3) == ["direct", "front"] * 3
    assert len({s.label for s in front_overhead.SCENARIOS}) == len(front_overhead.SCENARIOS)


# --------------------------------------------------------------------------- balancing


def _rendered_upstream() -> str:
    return render_upstream("alpha", [Backend("alpha", "127.0.0.1", 8001 + i, "onDemand") for i in range(3)])


def test_round_robin_config_is_the_rendered_one_minus_least_conn():
    lc = _rendered_upstream()
    rr = balancing.round_robin_upstream(lc)
    assert "least_conn;" in lc
    assert not re.search(r"^\s*least_conn;", rr, re.M)
    removed = [ln for ln in lc.splitlines() if ln not in rr.splitlines()]
    assert [ln.strip() for ln in removed] == ["least_conn;"]
    assert len(rr.splitlines()) == len(lc.splitlines()) - 1
    # everything else, servers (max_fails/fail_timeout), zone and keepalive, is untouched
    for directive in ("zone vllm_alpha", "keepalive ", f"max_fails={D.UPSTREAM_MAX_FAILS}"):
        assert directive in rr
    assert upstream_ports(rr) == upstream_ports(lc) == [8001, 8002, 8003]


def test_round_robin_derivation_refuses_unexpected_input():
    lc = _rendered_upstream()
    with pytest.raises(ValueError):
        balancing.round_robin_upstream(balancing.round_robin_upstream(lc))  # no least_conn left
    with pytest.raises(ValueError):
        balancing.round_robin_upstream(lc.replace("least_conn;", "least_conn;\n    least_conn;"))


def test_balancing_order_and_occupancy():
    assert balancing.run_order(2) == ["least_conn", "round_robin", "round_robin", "least_conn"]
    occ = balancing.Occupancy()
    assert occ.queued_share is None and occ.max_waiting == 0 and occ.mean_busy_slots is None
    occ.add([(4, 0), (3, 0), (2, 0)])
    occ.add([(4, 2), (4, 0), (1, 0)])
    assert occ.queued_share == 0.5 and occ.max_waiting == 2 and occ.mean_busy_slots == 9.0
    assert len(occ.merge(occ).samples) == 4
    assert balancing.CONCURRENCY < balancing.BACKENDS * balancing.MAX_NUM_SEQS  # loaded, not saturated
    lc, rr = _pooled(0.2, 0.8, 20.0), _pooled(0.25, 1.2, 18.0)
    rows = {r[0]: r for r in balancing.table_rows(lc, rr, occ, occ)}
    assert rows["latency p95"][3] == "0.667" and rows["latency p95"][5] == PASS
    rows = {r[0]: r for r in balancing.table_rows(_pooled(0.2, 1.0, 20.0), rr, occ, occ)}
    assert rows["latency p95"][5] == MISS


# --------------------------------------------------------------------------- drain


def test_drain_windows():
    assert drain.window_of(0.5, 5.0, 8.0) is None
    assert drain.window_of(1.0, 5.0, 8.0) == "steady"
    assert drain.window_of(5.0, 5.0, 8.0) == "during drain"
    assert drain.window_of(8.0, 5.0, 8.0) == "during drain"
    assert drain.window_of(8.01, 5.0, 8.0) == "after drain"
    res = _result([0.7] * 10, failures=0)
    for i, r in enumerate(res.records):
        r.started_s = i * 1.0  # 0..9 s
    res.records[6].error, res.records[6].status = "RemoteProtocolError: cut", 200
    win = drain.split_windows(res, 5.0, 8.0)
    assert {w: s["requests"] for w, s in win.items()} == {"steady": 4, "during drain": 4, "after drain": 1}
    assert win["during drain"]["failed"] == 1 and win["steady"]["failed"] == 0
    rows = drain.table_rows(win)
    assert rows[1][0] == "during drain" and rows[1][-1] == MISS
    assert rows[-1][0].startswith("spike") and rows[-1][4] == "1.000"


# --------------------------------------------------------------------------- plan scaling


def test_split_replicas_over_models():
    assert plan_scaling.split(1, 1) == [1]
    assert plan_scaling.split(100, 20) == [5] * 20
    assert plan_scaling.split(10, 3) == [4, 3, 3]
    with pytest.raises(ValueError):
        plan_scaling.split(1, 5)
    cells = plan_scaling.all_cells()
    assert ("docker", 1, 5) not in cells and ("kubernetes", 100, 20) in cells
    assert set(plan_scaling.DEFAULT_CELLS) <= set(cells)


@pytest.mark.parametrize("platform", ["kubernetes", "docker"])
@pytest.mark.parametrize("replicas,models", [(1, 1), (10, 5), (100, 20)])
def test_generated_stack_files_are_valid_prod_configs(platform, replicas, models):
    doc = plan_scaling.stack_doc(platform, replicas, models)
    plain, secrets = split_namespaced(doc["config"])
    cfg = parse_config(plain, secrets)
    assert cfg.environment == "prod" and cfg.platform == platform and len(cfg.models) == models
    assert len({m.name for m in cfg.models}) == models and cfg.default_model.name == cfg.models[0].name
    if platform == "kubernetes":
        assert sum(m.pool.on_demand + m.pool.spot_ceiling for m in cfg.models) == replicas
    else:
        assert len(cfg.hosts) == replicas
        assert sum(len(r) for r in place(cfg).values()) == replicas
    assert all(m.pool.on_demand == 1 for m in cfg.models)


def test_plan_growth_and_rows():
    a = plan_scaling.Cell("docker", 1, 1, [2.0, 1.9, 2.1], 30, 10, 0, 0)
    b = plan_scaling.Cell("docker", 100, 1, [21.9], 930, 400, 0, 0)
    c = plan_scaling.Cell("docker", 10, 1, [2.0], 35, 10, 0, 0)
    assert a.best_s == 1.9 and b.per_resource_ms == pytest.approx(21.9 / 930 * 1000)
    assert plan_scaling.growth_ms_per_resource(a, b) == pytest.approx(20.0 / 900 * 1000)
    assert plan_scaling.growth_ms_per_resource(a, c) is None  # 5 added resources: noise
    rows = plan_scaling.table_rows([a, c, b])
    assert all(len(r) == len(plan_scaling.HEADERS) for r in rows)
    assert rows[0][7] == "-" and rows[2][7] == "+22.2 ms/added resource"
    assert rows[2][8:] == ["<10 s", MISS] and rows[0][8:] == ["-", "-"]
    fast = plan_scaling.Cell("kubernetes", 100, 1, [1.2], 35, 30, 0, 0)
    assert plan_scaling.table_rows([fast])[0][9] == PASS


# --------------------------------------------------------------------------- run_all


def test_readme_section_replacement():
    text = f"intro\n{run_all.BEGIN}\nold\n{run_all.END}\nrest\n"
    assert run_all.replace_section(text, "new\n") == f"intro\n{run_all.BEGIN}\nnew\n{run_all.END}\nrest\n"
    with pytest.raises(ValueError):
        run_all.replace_section("no markers", "x")
    readme = (run_all.README).read_text()
    assert readme.count(run_all.BEGIN) == 1 and readme.count(run_all.END) == 1


def test_results_markdown_names_each_bench():
    r = BenchResult("x", "X title", "| a |\n|---|")
    md = run_all.results_markdown([(r, 12.3)], 12.3)
    assert "x 12 s" in md and "### X title" in md
