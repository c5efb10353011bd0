"""Shared e2e fixtures: a test CA and server certificate, fake vLLM backends, the rendered nginx front.

Everything binds 127.0.0.1 on free high ports. The front itself (`Front`, `launch_front`, the
test CA) lives in tests/support/front.py, shared with the real-vLLM tier; `start_front` adds
the fake backends: it starts them, renders the front for them and hands them to the `Front`,
whose teardown sends QUIT to nginx's pid, stops its Proc (process group), then every fake by pid.
"""

from __future__ import annotations

import shutil
from typing import Any, Callable, Iterator

import pytest

from tests.fakes.harness import FakeHandle, start_fake
from tests.support.front import (
    Front,
    Pki,  # noqa: F401 (re-exported)
    front_root,
    launch_front,
    make_pki,
    new_key,
)
from tests.support.procs import Proc, free_port
from tests.support.tools import require
from vllm_stack import defaults as D
from vllm_stack.endpoints import Backend
from vllm_stack.loader import parse_config

FAKE_GRACE_SECONDS = "1"


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def start_front(
    pki: Pki,
    models: dict[str, list[dict]],
    *,
    default: str | None = None,
    front: dict | None = None,
    upstream_auth: bool = True,
    n_keys: int = 3,
    fake_args: tuple[str, ...] = (),
    drain_seconds: int = D.DRAIN_SECONDS_MIN,
) -> Front:
    """Start fakes, render the front for them and start nginx (`launch_front`).

    `models`: name -> backend specs, each {"capacity": ..., "state": ..., "dead": bool}; a dead
    backend gets a free port nobody listens on (connection refused).
    """
    require("nginx")
    root = front_root()
    started: list[FakeHandle] = []
    try:
        keys = [new_key(f"front{i}") for i in range(n_keys)]
        backend_key = new_key("backend") if upstream_auth else None
        fakes: dict[str, list[FakeHandle]] = {}
        backends: list[Backend] = []
        for model, specs in models.items():
            fakes[model] = []
            for i, spec in enumerate(specs):
                if spec.get("dead"):
                    port = free_port()
                else:
                    h = start_fake(
                        root / "logs",
                        "--grace-seconds",
                        FAKE_GRACE_SECONDS,
                        *fake_args,
                        *spec.get("args", ()),
                        model=model,
                        api_key=backend_key if upstream_auth else keys[0],
                        name=f"fake_vllm_{model}_{i}",
                    )
                    started.append(h)
                    fakes[model].append(h)
                    port = h.port
                backends.append(
                    Backend(model, "127.0.0.1", port, spec.get("capacity", "onDemand"), spec.get("state", "up"))
                )
        specs = [
            {"name": m, "model": "mistralai/Mistral-7B-v0.3", "gpu": "L40S", "default": m == default} for m in models
        ]
        cfg = parse_config({"environment": "dev", "platform": "kubernetes", "models": specs, "front": front or {}})
        return launch_front(
            pki, cfg, backends, keys=keys, backend_key=backend_key, root=root, drain_seconds=drain_seconds, fakes=fakes
        )
    except BaseException:
        for h in started:
            h.stop()
        raise


@pytest.fixture
def front_factory(pki) -> Iterator[Callable[..., Front]]:
    """Function-scoped: every front started through it is stopped and its temp dir removed."""
    fronts: list[Front] = []

    def make(models: dict[str, list[dict]], **kw: Any) -> Front:
        fr = start_front(pki, models, **kw)
        fronts.append(fr)
        return fr

    yield make
    for fr in fronts:
        fr.stop()
        shutil.rmtree(fr.root, ignore_errors=True)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes a test appends here are stopped by pid, last started first, and checked gone."""
    started: list[Proc] = []
    try:
        yield started
    finally:
        for p in reversed(started):
            p.stop()
        for p in started:
            assert p.popen.poll() is not None, f"{p.name} (pid {p.pid}) still running"
