"""The GitHub Actions workflows: valid against GitHub's published workflow schema (the copy
check-jsonschema carries, so offline), and doing what the README says they do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from teaching.course import repository_branch

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"


def _check(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
         *map(str, paths)],
        capture_output=True, text=True, cwd=ROOT,
    )


def _load(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def _steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_workflows_match_the_published_schema():
    workflows = sorted(WORKFLOWS.glob("*.yml"))
    assert [p.name for p in workflows] == ["book.yml", "test.yml"]
    result = _check(*workflows)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  test:\n    steps:\n      - run: make test\n")  # no runs-on
    assert _check(broken).returncode != 0


def test_tests_run_on_every_push_with_the_readme_command():
    workflow = _load("test.yml")
    assert "push" in workflow["on"] and "pull_request" in workflow["on"]
    assert workflow["on"]["push"] is None, "every branch, not some"
    # What CI runs here, so the badge means the same: the browser and sandbox installs included.
    assert any(step.get("run") == "bash .ci/run" for step in _steps(workflow))
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci and "make browser" in ci and "make sandbox" in ci
    (job,) = workflow["jobs"].values()
    assert job["container"]["image"].startswith("python:3.11-"), "Debian, with Python 3.11"
    assert "--privileged" in job["container"]["options"], "bubblewrap needs user namespaces"


def test_book_is_built_from_the_configured_branch_and_published_to_pages():
    workflow = _load("book.yml")
    assert workflow["on"]["push"]["branches"] == [repository_branch()]
    steps = _steps(workflow)
    assert any(step.get("run") == "make book" for step in steps)
    uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact@")]
    assert [s["with"]["path"] for s in uploads] == ["_build/html"]
    assert any(s.get("uses", "").startswith("actions/deploy-pages@") for s in steps)
    assert workflow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
