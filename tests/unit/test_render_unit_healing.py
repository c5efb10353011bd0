"""The vLLM unit's watchdog (hosts heal), its sandboxing, and the one config key behind the
healing time (`models[].unhealthyRestartSeconds`). The same unit runs under a real systemd in
tests/systemd/ (where the exposure figure is measured)."""

from __future__ import annotations

import pytest

from tests.unit.test_render_host import cfg_for, parse_unit
from vllm_stack import defaults as D
from vllm_stack.config import unhealthy_restart_floor
from vllm_stack.loader import ConfigError, parse_config
from vllm_stack.placement import place
from vllm_stack.render import systemd as S
from vllm_stack.render.vllm_args import RenderError


def service_of(cfg, model: str = "llama", index: int = 0, **kw) -> dict[str, list[str]]:
    spec = next(m for m in cfg.models if m.name == model)
    r = place(cfg)[model][index]
    out: dict[str, list[str]] = {}
    for k, v in parse_unit(S.render_systemd_unit(cfg, spec, r, **kw))["Service"]:
        out.setdefault(k, []).append(v)
    return out


def raw_cfg(**model_extra):
    return {
        "environment": "dev",
        "platform": "docker",
        "hostRuntime": "systemd",
        "hosts": [{"name": "gpu-a", "address": "10.0.0.5", "gpu": "L40S", "gpuCount": 2}],
        "models": [{"name": "llama", "model": "meta-llama/Llama-3.1-8B", "gpu": "L40S", **model_extra}],
    }


def test_watchdog_is_the_configured_healing_time():
    svc = service_of(cfg_for())
    assert svc["WatchdogSec"] == [str(D.UNHEALTHY_RESTART_SEC)] == ["60"]
    assert svc["NotifyAccess"] == ["all"]  # the wrapper's systemd-notify children may ping it
    assert svc["Restart"] == ["always"]
    cfg = parse_config(raw_cfg(unhealthyRestartSeconds=120, pool={"drainSeconds": 30}))
    assert service_of(cfg)["WatchdogSec"] == ["120"]
    assert service_of(cfg, watchdog_sec=4)["WatchdogSec"] == ["4"]  # tests shorten it
    with pytest.raises(RenderError, match="watchdog_sec"):
        service_of(cfg, watchdog_sec=0)


def test_healing_time_below_the_drain_floor_is_refused_naming_the_key():
    floor = unhealthy_restart_floor(30)
    assert floor == 30 + D.TERMINATION_GRACE_EXTRA_SEC + D.PROBE_PERIOD_SEC == 55
    parse_config(raw_cfg(unhealthyRestartSeconds=floor, pool={"drainSeconds": 30}))
    with pytest.raises(ConfigError) as e:
        parse_config(raw_cfg(unhealthyRestartSeconds=floor - 1, pool={"drainSeconds": 30}))
    msg = str(e.value)
    assert msg.startswith("models[0].unhealthyRestartSeconds: 54 is not allowed; must be >= 55"), msg
    with pytest.raises(ConfigError, match=r"models\[0\]\.unhealthyRestartSeconds: .*less than or equal to 3600"):
        parse_config(raw_cfg(unhealthyRestartSeconds=3601))
    # the default is above the floor for every recommended drain
    assert D.UNHEALTHY_RESTART_SEC >= unhealthy_restart_floor(D.DRAIN_SECONDS_MAX)


def test_watchdog_stop_and_drain_budgets_fit_together():
    svc = service_of(cfg_for(drain=25))
    stop = int(svc["TimeoutStopSec"][0])
    assert stop == 25 + D.TERMINATION_GRACE_EXTRA_SEC
    assert int(svc["WatchdogSec"][0]) >= stop + D.PROBE_PERIOD_SEC


def test_sandboxing_settings():
    svc = service_of(cfg_for(gpu_count=4))
    for key, value in S.HARDENING:
        assert value in svc[key], key
    assert svc["CapabilityBoundingSet"] == [""] and svc["AmbientCapabilities"] == [""]
    assert svc["DevicePolicy"] == ["closed"]
    assert svc["DeviceAllow"] == [
        "/dev/nvidiactl rw",
        "/dev/nvidia-uvm rw",
        "/dev/nvidia-uvm-tools rw",
        "/dev/nvidia0 rw",
        "/dev/nvidia1 rw",
        "/dev/nvidia2 rw",
        "/dev/nvidia3 rw",
        "char-nvidia-uvm rw",
    ]
    assert svc["ReadWritePaths"] == [D.VLLM_WEIGHTS_DIR]
    assert svc["CacheDirectory"] == ["vllm"]
    assert svc["LimitNOFILE"] == ["65535"]
    # what would break vLLM is absent: PrivateDevices hides the GPUs (and /dev/shm is needed),
    # MemoryDenyWriteExecute breaks JIT kernels, ProcSubset=pid hides /proc/meminfo, RemoveIPC
    # deletes the shared memory of the other replicas of the same user
    for absent in ("PrivateDevices", "MemoryDenyWriteExecute", "ProcSubset", "RemoveIPC", "PrivateNetwork"):
        assert absent not in svc, absent
    assert "AF_INET AF_INET6" in svc["RestrictAddressFamilies"][0] and "AF_UNIX" in svc["RestrictAddressFamilies"][0]


def test_an_unset_heal_time_follows_a_long_drain_and_a_set_one_is_checked():
    """A 45 s drain needs 70 s (45 + 15 stop margin + 10 probe period): unset, the default rises to it."""
    from vllm_stack.config import ModelSpec, PoolSpec

    base = {"name": "m", "model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "L40S"}
    assert ModelSpec.model_validate({**base, "pool": {"drainSeconds": 45}}).unhealthy_restart_seconds == 70
    assert ModelSpec.model_validate({**base, "pool": PoolSpec(drain_seconds=45)}).unhealthy_restart_seconds == 70
    assert ModelSpec.model_validate({**base, "pool": {"drainSeconds": 20}}).unhealthy_restart_seconds == 60
    with pytest.raises(ValueError, match="unhealthyRestartSeconds|unhealthy_restart_seconds"):
        ModelSpec.model_validate({**base, "pool": {"drainSeconds": 45}, "unhealthyRestartSeconds": 60})
