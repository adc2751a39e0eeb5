"""The example CI pipelines, played end to end without a CI service.

Each test builds a real git repository (a base commit with ``examples/*.yaml`` under
``desired/``, a PR commit changing one user, a merge commit), then runs the jobs the way
the runner would: the workflow file is parsed, each ``run:``/``script:`` is executed
with bash and the environment the file declares, and secrets, variables and forge URLs
are replaced by the sandbox on loopback, the test PostgreSQL workspace and a fake forge
API (GitHub or GitLab REST, on loopback, recording comments).

Simulated rather than run: ``actions/checkout`` (a ``git clone`` at the commit),
``actions/setup-python`` and the ``pip install`` steps (the test's venv is on PATH),
``actions/upload-artifact`` / ``download-artifact`` (a copy kept by the test), and on
GitLab the job's ``artifacts:`` (handed to the fake API's artifact endpoint). Step and
rule ``if:`` conditions are not evaluated: the test runs the steps in order and checks
the exit codes and outputs that those conditions test.

Every job runs at a fixed date (``RECONCILER_AT``, far enough ahead that ``apply``, which
never evaluates before today, accepts it whenever the suite runs): no test depends on the
clock, and the examples' end dates have all come by then. The scheduled pipelines
(``reconciler-scheduled``) are played at dates around the end dates of their own history.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from reconciler.cli import ci
from reconciler.sandbox import app
from reconciler.values import frozen
from tests.support import fake_forge
from tests.support.fake_forge import OWNER_REPO, PROJECT_ID, TOKEN, Forge
from tests.support.pg import pg_dsn, unique_workspace, with_query

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
GITHUB_DIR = EXAMPLES / "github-actions"
GITLAB_FILE = EXAMPLES / "gitlab-ci" / ".gitlab-ci.yml"
PR = 7
STEP_TIMEOUT = 60.0  # per script; reached only when something hangs
ROLE_REPORTING = "1672380646005741603"
ROLE_TENANT_ADMIN = "1672380646005741609"
PIPELINE_DAY = "2099-01-01"  # RECONCILER_AT of every job unless a test says otherwise
EXPRESSION = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")


@pytest.fixture
def forge() -> Iterator[tuple[Forge, str]]:
    """The fake forge API on loopback: (its records, base URL)."""
    with fake_forge.serving() as served:
        yield served


@pytest.fixture
def sandbox() -> Iterator[tuple[app.Sandbox, str]]:
    """The federation and CloudIdentity sandbox with the examples' roles: (box, URL)."""
    roles = yaml.safe_load((EXAMPLES / "roles.yaml").read_text(encoding="utf-8"))["roles"]
    box = app.build(role_ids=[role["id"] for role in roles.values()])
    server = app.serve(box, "127.0.0.1", 0).start()
    try:
        yield box, server.url
    finally:
        server.stop()


# -- the repository ---------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo``; its stdout."""
    result = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=30
    )
    return result.stdout.strip()


@frozen
class History:
    """The commits of the test repository."""

    origin: Path
    base: str
    head: str  # the PR's head commit
    merge: str  # its merge commit on main
    broken: str  # another PR's head, with an invalid YAML
    purge: str  # another PR's head, removing more users than the policy lets disable


def make_history(root: Path) -> History:
    """A repository: base (examples), PR (li.wei gains reporting), merge, and a broken PR."""
    origin = root / "origin"
    desired = origin / "desired"
    desired.mkdir(parents=True)
    git(origin, "init", "-q", "-b", "main")
    git(origin, "config", "user.email", "ci@example.com")
    git(origin, "config", "user.name", "CI")
    for source in sorted(EXAMPLES.glob("*.yaml")):
        shutil.copy(source, desired / source.name)
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "base")
    base = git(origin, "rev-parse", "HEAD")
    git(origin, "checkout", "-q", "-b", "li-wei-reporting")
    team = desired / "team-support.yaml"
    text = team.read_text(encoding="utf-8")
    assert "roles: [agent]\n" in text
    team.write_text(text.replace("roles: [agent]\n", "roles: [agent, reporting]\n", 1))
    git(origin, "commit", "-q", "-am", "li.wei gains reporting")
    head = git(origin, "rev-parse", "HEAD")
    git(origin, "checkout", "-q", "main")
    git(origin, "merge", "-q", "--no-ff", "-m", "Merge PR 7", "li-wei-reporting")
    merge = git(origin, "rev-parse", "HEAD")
    git(origin, "checkout", "-q", "-b", "broken", base)
    team.write_text(
        team.read_text(encoding="utf-8").replace("roles: [agent]\n", "roles: [agent, nosuch]\n", 1)
    )
    git(origin, "commit", "-q", "-am", "unknown role")
    broken = git(origin, "rev-parse", "HEAD")
    git(origin, "checkout", "-q", "-b", "purge", base)
    text = team.read_text(encoding="utf-8")
    team.write_text(text[: text.index("  - account: tom.becker")], encoding="utf-8")
    git(origin, "commit", "-q", "-am", "remove two users")
    purge = git(origin, "rev-parse", "HEAD")
    git(origin, "checkout", "-q", "main")
    return History(origin=origin, base=base, head=head, merge=merge, broken=broken, purge=purge)


def checkout(history: History | DatedHistory, commit: str, workdir: Path) -> Path:
    """What actions/checkout (or the GitLab runner) leaves: a fresh clone at ``commit``."""
    subprocess.run(
        ["git", "clone", "-q", str(history.origin), str(workdir)], check=True, timeout=30
    )
    git(workdir, "checkout", "-q", commit)
    return workdir


# -- running scripts as the runner does ---------------------------------------------------


@frozen
class Ran:
    """One script's result."""

    code: int
    stdout: str
    stderr: str
    outputs: dict[str, str]


def base_env(tmp: Path) -> dict[str, str]:
    """A clean runner environment with this checkout's reconciler first on PATH."""
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "RECONCILER_AT": PIPELINE_DAY,
    }


def run_script(script: str, env: Mapping[str, str], cwd: Path) -> Ran:
    """Run ``script`` the way both runners do: ``bash -eo pipefail`` on a file."""
    outputs_file = cwd.parent / f"{cwd.name}.outputs"
    outputs_file.write_text("")
    script_file = cwd.parent / f"{cwd.name}.sh"
    script_file.write_text(script, encoding="utf-8")
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script_file)],
        env={**env, "GITHUB_OUTPUT": str(outputs_file)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        check=False,
    )
    outputs = dict(
        line.split("=", 1) for line in outputs_file.read_text().splitlines() if "=" in line
    )
    return Ran(code=result.returncode, stdout=result.stdout, stderr=result.stderr, outputs=outputs)


def resolve(value: Any, context: Mapping[str, str]) -> str:
    """Substitute ``${{ name }}`` from ``context``; an unknown name fails the test."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in context, f"the workflow uses ${{{{ {name} }}}}, unknown to the test"
        return context[name]

    return EXPRESSION.sub(one, str(value))


def resolved_env(mapping: Mapping[str, Any] | None, context: Mapping[str, str]) -> dict[str, str]:
    """An ``env:`` block with its expressions substituted."""
    return {key: resolve(value, context) for key, value in (mapping or {}).items()}


# -- GitHub Actions -------------------------------------------------------------------------


@dataclass
class GitHubJob:
    """One job of a workflow file, run step by step."""

    workflow: dict[str, Any]
    name: str
    context: dict[str, str]
    workdir: Path
    runner_env: dict[str, str]
    ran: dict[str, Ran] = field(default_factory=dict)

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The job's steps."""
        return list(self.workflow["jobs"][self.name]["steps"])

    def step(self, step_id: str) -> dict[str, Any]:
        """The step with ``id: step_id``."""
        return next(s for s in self.steps if s.get("id") == step_id)

    def run(self, step_id: str) -> Ran:
        """Run one ``run:`` step with the workflow's, the job's and the step's env."""
        step = self.step(step_id)
        assert "${{" not in step["run"], f"{step_id}: pass expressions through env, not inline"
        context = self.context_now()
        env = {
            **self.runner_env,
            **resolved_env(self.workflow.get("env"), context),
            **resolved_env(self.workflow["jobs"][self.name].get("env"), context),
            **resolved_env(step.get("env"), context),
        }
        done = run_script(step["run"], env, self.workdir)
        self.ran[step_id] = done
        return done

    def with_(self, step_id: str) -> dict[str, str]:
        """A ``uses:`` step's inputs, resolved."""
        return resolved_env(self.step(step_id).get("with"), self.context_now())

    def context_now(self) -> dict[str, str]:
        """The expression context including the outputs so far."""
        return {
            **self.context,
            **{
                f"steps.{sid}.outputs.{key}": value
                for sid, done in self.ran.items()
                for key, value in done.outputs.items()
            },
        }


def load_workflow(name: str) -> dict[str, Any]:
    """A workflow file (``on:`` stays a key: PyYAML reads it as True)."""
    data: dict[str, Any] = yaml.safe_load((GITHUB_DIR / name).read_text(encoding="utf-8"))
    return data


def github_context(sandbox_url: str, dsn: str) -> dict[str, str]:
    """The secrets, vars and github.* values the workflows refer to."""
    return {
        "secrets.RECONCILER_STATE": dsn,
        "secrets.RECONCILER_FEDERATION_APP_KEY": app.SANDBOX_APP_KEY,
        "secrets.RECONCILER_FEDERATION_APP_SECRET": app.SANDBOX_APP_SECRET,
        "secrets.VOLCENGINE_ACCESS_KEY": app.SANDBOX_ACCESS_KEY,
        "secrets.VOLCENGINE_SECRET_KEY": app.SANDBOX_SECRET_KEY,
        "vars.RECONCILER_FEDERATION_URL": sandbox_url,
        "vars.RECONCILER_CLOUDIDENTITY_URL": sandbox_url,
        "github.token": TOKEN,
    }


def github_runner_env(tmp: Path, forge_url: str, sha: str) -> dict[str, str]:
    """The variables GitHub's runner sets for every step."""
    return {
        **base_env(tmp),
        "GITHUB_ACTIONS": "true",
        "GITHUB_API_URL": f"{forge_url}/gh",
        "GITHUB_REPOSITORY": OWNER_REPO,
        "GITHUB_SHA": sha,
    }


def state_env(dsn: str, sandbox_url: str) -> dict[str, str]:
    """What an operator sets to run reconciler by hand against the test tenant."""
    return {
        "RECONCILER_STATE": dsn,
        "RECONCILER_FEDERATION_URL": sandbox_url,
        "RECONCILER_FEDERATION_APP_KEY": app.SANDBOX_APP_KEY,
        "RECONCILER_FEDERATION_APP_SECRET": app.SANDBOX_APP_SECRET,
        "RECONCILER_CLOUDIDENTITY_URL": sandbox_url,
        "VOLCENGINE_ACCESS_KEY": app.SANDBOX_ACCESS_KEY,
        "VOLCENGINE_SECRET_KEY": app.SANDBOX_SECRET_KEY,
        "NO_COLOR": "1",
    }


def bootstrap(history: History, tmp: Path, env: Mapping[str, str]) -> None:
    """The base commit applied once by hand, as when adopting the pipeline."""
    work = checkout(history, history.base, tmp / "bootstrap")
    script = "reconciler apply desired --auto-approve\n"
    done = run_script(script, {**base_env(tmp), **env}, work)
    assert done.code == 0, done.stderr


@frozen
class World:
    """What every GitHub job of one test shares."""

    history: History
    tmp: Path
    context: dict[str, str]
    forge_url: str
    artifacts: Path  # run id → the files actions/upload-artifact kept


def github_plan_job(world: World, commit: str, name: str, pr: int = PR) -> GitHubJob:
    """The plan job at ``commit`` of the PR, checked out."""
    history, tmp, context, forge_url = world.history, world.tmp, world.context, world.forge_url
    workdir = checkout(history, commit, tmp / name)
    job = GitHubJob(
        workflow=load_workflow("reconciler-plan.yml"),
        name="plan",
        context={
            **context,
            "github.event.pull_request.number": str(pr),
            "github.event.pull_request.head.sha": commit,
        },
        workdir=workdir,
        runner_env=github_runner_env(tmp, forge_url, commit),
    )
    assert [s["id"] for s in job.steps] == [
        "checkout",
        "python",
        "install",
        "validate",
        "plan",
        "comment",
        "upload",
        "verdict",
    ]
    return job


def run_github_plan(job: GitHubJob, artifacts: Path, forge: Forge, run_id: int) -> GitHubJob:
    """Every step of the plan job; the artifact kept and the run recorded when it passes."""
    assert job.ran == {}
    for step_id in ("validate", "plan", "comment"):
        job.run(step_id)
    upload = job.with_("upload")
    if job.ran["plan"].outputs["exitcode"] in ("0", "2"):
        assert upload["name"] == "reconciler-plan"
        (artifacts / str(run_id)).mkdir(parents=True)
        shutil.copy(job.workdir / upload["path"], artifacts / str(run_id) / upload["path"])
    if job.run("verdict").code == 0:
        head = job.context["github.event.pull_request.head.sha"]
        forge.plan_runs.append((run_id, head))
    return job


def run_github_apply(world: World, name: str) -> GitHubJob:
    """Every step of the apply job on the merge commit."""
    history, tmp, context, forge_url = world.history, world.tmp, world.context, world.forge_url
    artifacts = world.artifacts
    workdir = checkout(history, history.merge, tmp / name)
    job = GitHubJob(
        workflow=load_workflow("reconciler-apply.yml"),
        name="apply",
        context=context,
        workdir=workdir,
        runner_env=github_runner_env(tmp, forge_url, history.merge),
    )
    assert [s["id"] for s in job.steps] == [
        "checkout",
        "python",
        "install",
        "find",
        "download",
        "apply",
        "comment",
        "verdict",
    ]
    found = job.run("find")
    assert found.code == 0, found.stderr
    download = job.with_("download")
    assert (download["name"], download["github-token"]) == ("reconciler-plan", TOKEN)
    for item in (artifacts / download["run-id"]).iterdir():
        shutil.copy(item, workdir / download["path"] / item.name)
    for step_id in ("apply", "comment", "verdict"):
        job.run(step_id)
    return job


def test_github_actions_pipeline(
    tmp_path: Path, sandbox: tuple[app.Sandbox, str], forge: tuple[Forge, str]
) -> None:
    """PR: validate 0, plan 2, one comment (updated on re-run), artifact; merge: apply 0,
    re-apply refused as stale; a broken PR gets ::error annotations and fails validate."""
    box, sandbox_url = sandbox
    records, forge_url = forge
    dsn = _workspace_dsn()
    history = make_history(tmp_path)
    bootstrap(history, tmp_path, state_env(dsn, sandbox_url))
    artifacts = tmp_path / "artifacts"
    world = World(
        history=history,
        tmp=tmp_path,
        context=github_context(sandbox_url, dsn),
        forge_url=forge_url,
        artifacts=artifacts,
    )

    job = github_plan_job(world, history.head, "plan1")
    run_github_plan(job, artifacts, records, run_id=1)
    assert job.ran["validate"].code == 0, job.ran["validate"].stdout + job.ran["validate"].stderr
    assert job.ran["plan"].code == 0, job.ran["plan"].stderr
    assert job.ran["plan"].outputs["exitcode"] == "2", job.ran["plan"].stderr
    assert job.ran["comment"].code == 0, job.ran["comment"].stderr
    assert job.ran["verdict"].code == 0
    assert len(records.comments[PR]) == 1
    _check_plan_comment(records.comments[PR][0]["body"], history.head)

    # A re-run (new push, same content) updates the one comment instead of adding one.
    again = github_plan_job(world, history.head, "plan2")
    run_github_plan(again, artifacts, records, run_id=2)
    assert again.ran["plan"].outputs["exitcode"] == "2"
    assert len(records.comments[PR]) == 1
    assert any(call.startswith("PATCH ") for call in records.calls)

    records.merges[history.merge] = (PR, history.head)
    applied = run_github_apply(world, "apply1")
    assert applied.ran["find"].outputs["plan_run_id"] == "2"  # the newest successful run
    assert applied.ran["apply"].outputs["exitcode"] == "0", applied.ran["apply"].stderr
    assert applied.ran["comment"].code == 0, applied.ran["comment"].stderr
    assert applied.ran["verdict"].code == 0
    assert ROLE_REPORTING in box.federation.users(app.SANDBOX_APP_KEY)["li.wei"].role_ids
    result = _comment(records, "<!-- reconciler-apply -->")
    assert "✅ reconciler apply: done" in result
    assert "`li.wei`" in result

    # The same reviewed plan again: the state moved on, so it is stale and refused.
    stale = run_github_apply(world, "apply2")
    assert stale.ran["apply"].outputs["exitcode"] == "1"
    assert "stale plan" in stale.ran["apply"].stderr
    assert "::error title=reconciler apply refused::" in stale.ran["apply"].stdout
    assert stale.ran["verdict"].code == 1
    assert "refused, the reviewed plan is stale" in _comment(records, "<!-- reconciler-apply -->")
    assert len(records.comments[PR]) == 2  # one plan comment, one result comment

    # Two disables where the policy allows one: blocked, commented, failed, nothing kept.
    blocked = run_github_plan(
        github_plan_job(world, history.purge, "plan4", pr=PR + 1), artifacts, records, run_id=4
    )
    assert blocked.ran["plan"].outputs["exitcode"] == "3"
    assert "::error title=reconciler plan blocked::" in blocked.ran["plan"].stdout
    assert "**Blocked by a guard rail**" in records.comments[PR + 1][0]["body"]
    assert "[!CAUTION]" in records.comments[PR + 1][0]["body"]
    assert blocked.ran["verdict"].code == 1
    assert not (artifacts / "4").exists()
    assert (4, history.purge) not in records.plan_runs

    broken = github_plan_job(world, history.broken, "plan3")
    validate = broken.run("validate")
    assert validate.code == 1
    annotations = [line for line in validate.stdout.splitlines() if line.startswith("::error ")]
    assert annotations, validate.stdout + validate.stderr
    assert re.match(r"::error file=desired/team-support\.yaml,line=\d+", annotations[0]), (
        annotations
    )


# -- GitLab CI ------------------------------------------------------------------------------


def gitlab_job(pipeline: dict[str, Any], name: str, env: Mapping[str, str], workdir: Path) -> Ran:
    """Run one job's ``script:`` (not the pip ``before_script``) with the file's variables."""
    job = pipeline[name]
    script = "\n".join(job["script"]) + "\n"
    variables = {**pipeline.get("variables", {}), **job.get("variables", {})}
    return run_script(script, {**env, **{k: str(v) for k, v in variables.items()}}, workdir)


def gitlab_env(tmp: Path, forge_url: str, sandbox_url: str, dsn: str, sha: str) -> dict[str, str]:
    """GitLab's predefined variables plus the project's CI/CD variables."""
    return {
        **base_env(tmp),
        **state_env(dsn, sandbox_url),
        "GITLAB_CI": "true",
        "CI_API_V4_URL": f"{forge_url}/gl/api/v4",
        "CI_PROJECT_ID": PROJECT_ID,
        "CI_COMMIT_SHA": sha,
        "RECONCILER_GITLAB_TOKEN": TOKEN,
    }


def test_gitlab_ci_pipeline(
    tmp_path: Path, sandbox: tuple[app.Sandbox, str], forge: tuple[Forge, str]
) -> None:
    """MR: validate 0, plan job posts one note and keeps plan.json; merge: apply 0, a
    second apply refused as stale; a broken MR fails validate with a located problem."""
    box, sandbox_url = sandbox
    records, forge_url = forge
    dsn = _workspace_dsn()
    history = make_history(tmp_path)
    bootstrap(history, tmp_path, state_env(dsn, sandbox_url))
    pipeline: dict[str, Any] = yaml.safe_load(GITLAB_FILE.read_text(encoding="utf-8"))
    assert "pip install" in " ".join(pipeline["default"]["before_script"])

    mr_env = {
        **gitlab_env(tmp_path, forge_url, sandbox_url, dsn, history.head),
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_MERGE_REQUEST_IID": str(PR),
    }
    work = checkout(history, history.head, tmp_path / "mr")
    validate = gitlab_job(pipeline, "reconciler-validate", mr_env, work)
    assert validate.code == 0, validate.stdout + validate.stderr
    for _ in range(2):  # the second run updates the note
        plan = gitlab_job(pipeline, "reconciler-plan", mr_env, work)
        assert plan.code == 0, plan.stderr
        assert len(records.comments[PR]) == 1
    _check_plan_comment(records.comments[PR][0]["body"], history.head)
    assert pipeline["reconciler-plan"]["artifacts"]["paths"] == ["plan.json"]
    records.mr_artifacts[PR] = (work / "plan.json").read_bytes()

    records.merges[history.merge] = (PR, history.head)
    main_env = gitlab_env(tmp_path, forge_url, sandbox_url, dsn, history.merge)
    applied = gitlab_job(
        pipeline, "reconciler-apply", main_env, checkout(history, history.merge, tmp_path / "main1")
    )
    assert applied.code == 0, applied.stderr
    assert ROLE_REPORTING in box.federation.users(app.SANDBOX_APP_KEY)["li.wei"].role_ids
    assert "✅ reconciler apply: done" in _comment(records, "<!-- reconciler-apply -->")

    stale = gitlab_job(
        pipeline, "reconciler-apply", main_env, checkout(history, history.merge, tmp_path / "main2")
    )
    assert stale.code == 1
    assert "stale plan" in stale.stderr
    assert "refused, the reviewed plan is stale" in _comment(records, "<!-- reconciler-apply -->")

    broken_work = checkout(history, history.broken, tmp_path / "broken")
    broken = gitlab_job(pipeline, "reconciler-validate", mr_env, broken_work)
    assert broken.code == 1
    assert re.search(r"desired/team-support\.yaml:\d+:\d+: ", broken.stdout), broken.stdout


# -- the scheduled pipelines ----------------------------------------------------------------


@frozen
class DatedHistory:
    """A main branch with end dates, and a later commit that grants without being applied."""

    origin: Path
    dated: str  # sam.okafor: tenant-admin until 2099-06-15; tom.becker: expires 2099-06-18
    granted: str  # then li.wei gains reporting on main (merged, its apply never ran)


def make_dated_history(root: Path) -> DatedHistory:
    """The examples with two end dates in June 2099, then an unapplied grant."""
    origin = root / "origin"
    desired = origin / "desired"
    desired.mkdir(parents=True)
    git(origin, "init", "-q", "-b", "main")
    git(origin, "config", "user.email", "ci@example.com")
    git(origin, "config", "user.name", "CI")
    for source in sorted(EXAMPLES.glob("*.yaml")):
        shutil.copy(source, desired / source.name)
    _edit(
        desired / "team-platform.yaml",
        "    roles: [reporting]\n    expires: 2027-09-01",
        "    roles: [reporting, {role: tenant-admin, until: 2099-06-15}]",
    )
    _edit(
        desired / "team-support.yaml",
        "    email: tom.becker@example.com\n",
        "    email: tom.becker@example.com\n    expires: 2099-06-18\n",
    )
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "end dates")
    dated = git(origin, "rev-parse", "HEAD")
    _edit(desired / "team-support.yaml", "roles: [agent]\n", "roles: [agent, reporting]\n")
    git(origin, "commit", "-q", "-am", "li.wei gains reporting")
    return DatedHistory(origin=origin, dated=dated, granted=git(origin, "rev-parse", "HEAD"))


def _edit(file: Path, old: str, new: str) -> None:
    text = file.read_text(encoding="utf-8")
    assert old in text, f"{file.name} no longer holds {old!r}"
    file.write_text(text.replace(old, new, 1), encoding="utf-8")


def _dated_bootstrap(history: DatedHistory, tmp: Path, env: Mapping[str, str]) -> None:
    """The dated commit applied by hand on 2099-06-10: every grant still running."""
    work = checkout(history, history.dated, tmp / "bootstrap")
    done = run_script(
        "reconciler apply desired --auto-approve\n",
        {**base_env(tmp), **env, "RECONCILER_AT": "2099-06-10"},
        work,
    )
    assert done.code == 0, done.stderr


def _seed_failed_event(sandbox_url: str, account: str) -> str:
    """A failed provisioning event of ``account`` in the sandbox's CloudIdentity."""
    answer = httpx.post(
        f"{sandbox_url}/_sandbox/cloudidentity/events",
        json=[{"UserName": account, "TargetName": "prod-account"}],
    )
    answer.raise_for_status()
    return str(answer.json()["events"][0]["UserProvisioningEventId"])


def _check_revoked(box: app.Sandbox, sandbox_url: str, event_id: str) -> None:
    """The end dates are carried out on the tenant and the failed event was retried."""
    users = box.federation.users(app.SANDBOX_APP_KEY)
    assert ROLE_TENANT_ADMIN not in users["sam.okafor"].role_ids
    assert users["tom.becker"].enabled is False
    assert users["li.wei"].enabled is True
    stats = httpx.get(f"{sandbox_url}/_sandbox/cloudidentity/stats").json()
    assert stats["retries"].get(event_id) == 1, stats


@frozen
class Schedule:
    """What every scheduled GitHub run of one test shares."""

    history: DatedHistory
    tmp: Path
    context: dict[str, str]
    forge_url: str


def scheduled_github_job(world: Schedule, commit: str, name: str, day: str) -> GitHubJob:
    """The scheduled workflow's job at ``commit`` on ``day``, every step run."""
    workdir = checkout(world.history, commit, world.tmp / name)
    runner = github_runner_env(world.tmp, world.forge_url, commit)
    summary = world.tmp / f"{name}.summary.md"
    job = GitHubJob(
        workflow=load_workflow("reconciler-scheduled.yml"),
        name="revoke",
        context=world.context,
        workdir=workdir,
        runner_env={**runner, "RECONCILER_AT": day, "GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert [s["id"] for s in job.steps] == [
        "checkout",
        "python",
        "install",
        "apply",
        "summary",
        "verdict",
    ]
    for step_id in ("apply", "summary", "verdict"):
        job.run(step_id)
    return job


def test_github_scheduled_pipeline_revokes_and_retries(
    tmp_path: Path, sandbox: tuple[app.Sandbox, str], forge: tuple[Forge, str]
) -> None:
    """Daily, without a PR: on 2099-06-20 the grant that ended on the 15th is removed, the
    account that ended on the 18th disabled, the failed event retried; once main holds an
    unapplied grant, the run is refused with exit 3 and sends nothing."""
    box, sandbox_url = sandbox
    _, forge_url = forge
    dsn = _workspace_dsn()
    history = make_dated_history(tmp_path)
    _dated_bootstrap(history, tmp_path, state_env(dsn, sandbox_url))
    workflow = load_workflow("reconciler-scheduled.yml")
    triggers: Any = workflow.get(True)  # type: ignore[call-overload]  # PyYAML reads `on:` as True
    assert triggers["schedule"][0]["cron"]
    assert (
        workflow["concurrency"]["group"]
        == load_workflow("reconciler-apply.yml")["concurrency"]["group"]
    )
    event_id = _seed_failed_event(sandbox_url, "li.wei")
    world = Schedule(
        history=history, tmp=tmp_path, context=github_context(sandbox_url, dsn), forge_url=forge_url
    )

    done = scheduled_github_job(world, history.dated, "scheduled1", "2099-06-20")
    assert done.ran["apply"].outputs["exitcode"] == "0", done.ran["apply"].stderr
    assert done.ran["verdict"].code == 0
    _check_revoked(box, sandbox_url, event_id)
    assert "✅ reconciler apply: done" in (tmp_path / "scheduled1.summary.md").read_text()

    creates = box.federation.stats().calls["createTask"]
    refused = scheduled_github_job(world, history.granted, "scheduled2", "2099-06-21")
    assert refused.ran["apply"].outputs["exitcode"] == "3"
    assert (
        "--revocations-only: the plan also grants or changes access" in refused.ran["apply"].stderr
    )
    assert "::error title=reconciler scheduled run refused::" in refused.ran["apply"].stdout
    assert refused.ran["verdict"].code == 1
    assert box.federation.stats().calls["createTask"] == creates  # nothing was sent
    summary = (tmp_path / "scheduled2.summary.md").read_text()
    assert "refused, the plan grants or changes access" in summary


def test_gitlab_scheduled_pipeline_revokes_and_retries(
    tmp_path: Path, sandbox: tuple[app.Sandbox, str], forge: tuple[Forge, str]
) -> None:
    """The GitLab schedule: only reconciler-scheduled runs; it carries out the end dates and
    the retry, then refuses an unapplied grant (the job fails, nothing is sent)."""
    box, sandbox_url = sandbox
    _, forge_url = forge
    dsn = _workspace_dsn()
    history = make_dated_history(tmp_path)
    _dated_bootstrap(history, tmp_path, state_env(dsn, sandbox_url))
    pipeline: dict[str, Any] = yaml.safe_load(GITLAB_FILE.read_text(encoding="utf-8"))
    assert {"if": '$CI_PIPELINE_SOURCE == "schedule"'} in pipeline["workflow"]["rules"]
    assert pipeline["reconciler-scheduled"]["rules"] == [
        {"if": '$CI_PIPELINE_SOURCE == "schedule"'}
    ]
    # In a scheduled pipeline `changes:` is always true: the reviewed apply must stay out.
    assert pipeline["reconciler-apply"]["rules"][0] == {
        "if": '$CI_PIPELINE_SOURCE == "schedule"',
        "when": "never",
    }
    event_id = _seed_failed_event(sandbox_url, "li.wei")

    def run(commit: str, name: str, day: str) -> Ran:
        env = {
            **gitlab_env(tmp_path, forge_url, sandbox_url, dsn, commit),
            "CI_PIPELINE_SOURCE": "schedule",
            "RECONCILER_AT": day,
        }
        work = checkout(history, commit, tmp_path / name)
        return gitlab_job(pipeline, "reconciler-scheduled", env, work)

    done = run(history.dated, "scheduled1", "2099-06-20")
    assert done.code == 0, done.stderr
    assert "✅ reconciler apply: done" in done.stdout
    _check_revoked(box, sandbox_url, event_id)

    creates = box.federation.stats().calls["createTask"]
    refused = run(history.granted, "scheduled2", "2099-06-21")
    assert refused.code == 1
    assert "--revocations-only: the plan also grants or changes access" in refused.stderr
    assert "refused, the plan grants or changes access" in refused.stdout
    assert box.federation.stats().calls["createTask"] == creates


# -- shared checks --------------------------------------------------------------------------


def _workspace_dsn() -> str:
    return with_query(pg_dsn(), workspace=unique_workspace())


def _comment(forge: Forge, marker: str) -> str:
    bodies = [c["body"] for c in forge.comments.get(PR, []) if c["body"].startswith(marker)]
    assert len(bodies) == 1, bodies
    return str(bodies[0])


def _check_plan_comment(body: str, head: str) -> None:
    """Marker first, the verdict, the summary, the access changes, the commit."""
    assert body.startswith("<!-- reconciler-plan -->\n")
    assert "Changes: merging this" in body
    assert "### reconciler plan:" in body  # the summary headline and table
    assert "| ✏️ modify | 1 |" in body
    assert "#### Access changes by role" in body
    assert re.search(r"\*\*reporting\*\* \| `li\.wei`", body), body
    assert head in body


# -- the helper's edges, without a pipeline -------------------------------------------------


def _mock_github(
    pages: list[list[dict[str, Any]]], seen: list[httpx.Request]
) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/pulls"):
            return httpx.Response(200, json=[{"number": 3, "merged_at": None, "head": {}}])
        if request.method == "GET":
            page = int(request.url.params["page"])
            return httpx.Response(200, json=pages[page - 1] if page <= len(pages) else [])
        return httpx.Response(200, json={})

    return httpx.MockTransport(handle)


GITHUB_ENV = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_API_URL": "https://api.example",
    "GITHUB_REPOSITORY": OWNER_REPO,
    "GITHUB_TOKEN": TOKEN,
}


def test_ci_post_finds_its_comment_on_a_later_page(tmp_path: Path) -> None:
    """The marked comment on page 2 is updated; a quote of the marker is not taken for it."""
    others = [{"id": i, "body": f"> <!-- m -->\nquoted {i}"} for i in range(100)]
    seen: list[httpx.Request] = []
    body = tmp_path / "body.md"
    body.write_text("new plan\n")
    transport = _mock_github([others, [{"id": 555, "body": "<!-- m -->\nold"}]], seen)
    argv = ["post", "--pr", "9", "--marker", "<!-- m -->", "--body-file", str(body)]
    assert ci.main(argv, env=GITHUB_ENV, transport=transport) == 0
    patch = seen[-1]
    assert (patch.method, patch.url.path) == ("PATCH", f"/repos/{OWNER_REPO}/issues/comments/555")
    assert json.loads(patch.content) == {"body": "<!-- m -->\nnew plan\n"}
    assert patch.headers["Authorization"] == f"Bearer {TOKEN}"


def test_ci_refuses_a_commit_without_a_merged_pr(capsys: pytest.CaptureFixture[str]) -> None:
    """A direct push has no reviewed plan: merged-pr fails and says why."""
    transport = _mock_github([], [])
    argv = ["merged-pr", "--sha", "abcdef1234567890", "--plan-workflow", "p.yml"]
    assert ci.main(argv, env=GITHUB_ENV, transport=transport) == 1
    assert "did not come from a merged pull/merge request" in capsys.readouterr().err


def test_ci_needs_a_forge(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Outside GitHub Actions and GitLab CI the helper says what is missing."""
    argv = ["post", "--pr", "1", "--marker", "m", "--body-file", str(tmp_path / "x")]
    assert ci.main(argv, env={}) == 1
    assert "not running on GitHub Actions or GitLab CI" in capsys.readouterr().err
