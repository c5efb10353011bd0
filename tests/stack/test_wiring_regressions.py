"""Program wiring no other stack test pinned (each was broken in a copy and the fast tier still passed):

* the extra client keys (`apiKeys` secret, comma-separated) reach the front's API-key map, next to
  the primary `apiKey`: docker, the `front-api-keys` remote command's secret stdin; kubernetes, the
  api-keys Secret;
* `monitoring.alerts.*For` in the stack file reaches the `for:` of the rules the program deploys.

Both run the real `__main__.py` under mocks (tests/stack/program_dump) on a copy of the dev (docker)
and prod (kubernetes) stack files with every `*For` set to its own value.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from vllm_stack import defaults as D
from vllm_stack.config import AlertSpec
from vllm_stack.render import alerts as A
from vllm_stack.render import routing_monitoring as RM
from vllm_stack.render.cost_rules import FOR_FIELD as COST_FOR_FIELD

from .conftest import ROOT, SCAN_SECRETS, one, unwrap

#: Extra keys as an operator types them: spaces after commas, an empty entry, regex metacharacters
#: of the key alphabet (`.` and `+` must come out escaped, `~` and `/` as they are).
EXTRA_KEYS = ("extra-KEY-0001aaaaaaaa", "ops.KEY+0002bbbb/cccc", "ci_key~0003dddddddd")
API_KEYS_SECRET = f" {EXTRA_KEYS[0]},{EXTRA_KEYS[1]} ,, {EXTRA_KEYS[2]} "
SECRETS = {**SCAN_SECRETS, "apiKeys": API_KEYS_SECRET}

FOR_KEYS = sorted((name, f.alias or name) for name, f in AlertSpec.model_fields.items() if name.endswith("_for"))
#: A distinct `for` per field (none equal to a default), so a swapped wire shows.
FOR_VALUES = {key: f"{i + 41}m" for i, (_, key) in enumerate(FOR_KEYS)}
STACKS = {"docker": "Pulumi.dev.yaml", "kubernetes": "Pulumi.prod.yaml"}


def _stack_copy(name: str, tmp: Path) -> Path:
    doc = yaml.safe_load((ROOT / name).read_text())
    mon = doc["config"].setdefault("vllm-stack:monitoring", {})
    mon["alerts"] = {**(mon.get("alerts") or {}), **FOR_VALUES}
    out = tmp / name
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def _dump(path: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.stack.program_dump", str(path), json.dumps(SECRETS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def dumps(tmp_path_factory) -> dict[str, dict]:
    """platform -> program dump of its stack copy (both programs run at once)."""
    tmp = tmp_path_factory.mktemp("wiring")
    paths = {platform: _stack_copy(name, tmp) for platform, name in STACKS.items()}
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(paths, pool.map(_dump, paths.values())))


def _keys_map(platform: str, d: dict) -> str:
    if platform == "docker":
        cmd = one(d, "command:remote:Command", "front-api-keys")
        assert "stdin" in cmd["secretKeys"]
        assert cmd["inputs"]["create"].endswith("/etc/nginx/vllm/api-keys.map'")
        return unwrap(cmd["inputs"]["stdin"])
    secret = one(d, "kubernetes:core/v1:Secret", "secret-vllm-front-api-keys")
    assert "stringData" in secret["secretKeys"]
    return unwrap(secret["inputs"]["stringData"])["api-keys.map"]


def _anchored(key: str) -> str:
    """The map line nginx needs for one key: an anchored, case-sensitive regex of the whole header."""
    return '"~^Bearer ' + re.sub(r"([.+])", r"\\\1", key) + '$" 1;'


@pytest.mark.parametrize("platform", list(STACKS))
def test_every_extra_api_key_and_the_primary_reach_the_front_key_map(dumps, platform):
    text = _keys_map(platform, dumps[platform])
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    expected = {_anchored(k) for k in (SCAN_SECRETS["apiKey"], *EXTRA_KEYS)}
    assert set(lines) == expected, lines
    assert len(lines) == 4  # no empty entry from `,,`, no untrimmed key
    assert r'"~^Bearer ops\.KEY\+0002bbbb/cccc$" 1;' in lines
    # each pattern matches its own header only (what nginx does with the `~` entry)
    for key in (SCAN_SECRETS["apiKey"], *EXTRA_KEYS):
        pattern = next(line for line in lines if line == _anchored(key))[2:-4]
        assert re.fullmatch(pattern, f"Bearer {key}")
        assert not re.fullmatch(pattern, f"Bearer {key}x") and not re.fullmatch(pattern, f"Bearer x{key}")


def _deployed_rules(platform: str, d: dict) -> dict[str, dict]:
    if platform == "docker":
        text = unwrap(one(d, "command:remote:Command", "monitoring-rules")["inputs"]["stdin"])
    else:
        text = one(d, "kubernetes:core/v1:ConfigMap", "configmap-vllm-stack-prometheus-config")["inputs"]["data"][
            "vllm-alerts.yml"
        ]
    doc = yaml.safe_load(text)
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


@pytest.mark.parametrize("platform", list(STACKS))
def test_every_alert_for_in_the_stack_file_reaches_its_deployed_rule(dumps, platform):
    rules = _deployed_rules(platform, dumps[platform])
    by_field = {name: FOR_VALUES[key] for name, key in FOR_KEYS}
    every = {**A.FOR_FIELD, **COST_FOR_FIELD}
    # the routing tier's alert has a fixed `for` (prod routes both models; dev has one replica, no router)
    fixed = {RM.PREFIX_HIT_RATE_COLLAPSE: D.ALERT_PREFIX_HIT_FOR} if platform == "kubernetes" else {}
    assert set(rules) == set(every) | set(fixed)
    assert {alert: r["for"] for alert, r in rules.items()} == {a: by_field[f] for a, f in every.items()} | fixed
