"""CI glue for the example pipelines: one PR comment, the merged PR, the reviewed plan.

``python -m reconciler.ci COMMAND``, run by the workflows under ``examples/github-actions``
and ``examples/gitlab-ci``. The forge (GitHub or GitLab) and its API come from the
variables every runner sets, so the same commands serve both:

    GitHub: GITHUB_ACTIONS=true, GITHUB_API_URL, GITHUB_REPOSITORY, GITHUB_TOKEN
    GitLab: GITLAB_CI=true, CI_API_V4_URL, CI_PROJECT_ID, RECONCILER_GITLAB_TOKEN
            (a project access token with the ``api`` scope: CI_JOB_TOKEN cannot write notes)

Commands:

    post --pr N --marker M --body-file F   create, or update in place, the one comment that
                                           starts with M (a hidden ``<!-- ... -->`` marker)
    merged-pr --sha SHA [--plan-workflow W] print ``number=``/``head_sha=`` (and, on GitHub,
                                           ``plan_run_id=``: W's last successful PR run there)
    fetch-plan --pr N --job J --out F      GitLab: the plan file J saved for the MR's head
                                           (--ref for merged results pipelines)
    apply-summary --exit-code C --report R --log L   the apply result as Markdown

Exit 0 on success, 1 with ``error: ...`` on stderr otherwise.
"""

from __future__ import annotations

import enum
import json
import os
import re
import sys
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from reconciler.cli import parsing
from reconciler.errors import (
    EXIT_BLOCKED,
    EXIT_OK,
    ApiError,
    ConfigError,
    ReconcilerError,
    UsageError,
    printable,
)
from reconciler.providers import http
from reconciler.values import frozen

_PAGE = 100
_TIMEOUT = 30.0


class ForgeKind(enum.StrEnum):
    """The forges whose APIs the pipelines talk to."""

    GITHUB = "github"
    GITLAB = "gitlab"


@frozen
class Forge:
    """Where the forge's REST API is and how to talk to it."""

    kind: ForgeKind
    api: str
    project: str  # "owner/name" on GitHub, the numeric project id on GitLab
    headers: tuple[tuple[str, str], ...]


def _need(env: Mapping[str, str], name: str, why: str) -> str:
    value = env.get(name, "")
    if not value:
        raise ConfigError(f"{name} is not set", hint=why)
    return value


def forge_from_env(env: Mapping[str, str]) -> Forge:
    """The forge this job runs on, from the runner's predefined variables."""
    if env.get("GITHUB_ACTIONS") == "true":
        token = _need(env, "GITHUB_TOKEN", "pass `GITHUB_TOKEN: ${{ github.token }}` in env")
        return Forge(
            kind=ForgeKind.GITHUB,
            api=env.get("GITHUB_API_URL", "https://api.github.com").rstrip("/"),
            project=_need(env, "GITHUB_REPOSITORY", "set by GitHub Actions"),
            headers=(
                ("Authorization", f"Bearer {token}"),
                ("Accept", "application/vnd.github+json"),
                ("X-GitHub-Api-Version", "2022-11-28"),
            ),
        )
    if env.get("GITLAB_CI") == "true":
        token = _need(
            env,
            "RECONCILER_GITLAB_TOKEN",
            "add a masked CI/CD variable holding a project access token with the api scope",
        )
        return Forge(
            kind=ForgeKind.GITLAB,
            api=_need(env, "CI_API_V4_URL", "set by GitLab CI").rstrip("/"),
            project=_need(env, "CI_PROJECT_ID", "set by GitLab CI"),
            headers=(("PRIVATE-TOKEN", token),),
        )
    raise ConfigError(
        "not running on GitHub Actions or GitLab CI",
        hint="set GITHUB_ACTIONS=true or GITLAB_CI=true and the forge's API variables",
    )


class Session:
    """An httpx client for one forge; its failures become ApiError (via ``providers.http``)."""

    def __init__(self, forge: Forge, *, transport: httpx.BaseTransport | None = None) -> None:
        self.forge = forge
        self._origin = _origin(httpx.URL(forge.api))
        self._client = httpx.Client(
            headers=dict(forge.headers),
            timeout=_TIMEOUT,
            follow_redirects=True,  # GitLab serves artifacts through a CDN redirect
            transport=transport,
            event_hooks={"request": [self._keep_token_home]},
        )

    def _keep_token_home(self, request: httpx.Request) -> None:
        """Send the forge's headers (its token) to the forge only, never along a redirect."""
        # httpx drops only Authorization on a cross-origin redirect; GitLab's PRIVATE-TOKEN
        # would follow an artifact download to the object store or CDN.
        if _origin(request.url) != self._origin:
            for name, _ in self.forge.headers:
                request.headers.pop(name, None)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; ApiError (naming method, path and status) unless 2xx."""
        url = f"{self.forge.api}{path}"
        call = http.ApiCall(
            api=f"the {self.forge.kind} API",
            name=f"{method} {path}",
            unsent_hint="check the network and the forge's API URL",
            lost_hint="run the job again: it finds and updates what it already did",
        )
        with http.translated(self._client, call):
            response = self._client.request(method, url, **kwargs)
        if not response.is_success:
            raise ApiError(
                f"{method} {path} answered HTTP {response.status_code}: {response.text[:200]}",
                hint="check the token's permissions (GitHub: pull-requests: write, "
                "actions: read; GitLab: api scope, Reporter or above)",
            )
        return response

    def pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list endpoint."""
        page = 1
        while True:
            items = self.call("GET", path, params={**params, "per_page": _PAGE, "page": page})
            batch = items.json()
            yield from batch
            if len(batch) < _PAGE:
                return
            page += 1


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _comments_path(forge: Forge, pr: int) -> str:
    if forge.kind is ForgeKind.GITHUB:
        return f"/repos/{forge.project}/issues/{pr}/comments"
    return f"/projects/{forge.project}/merge_requests/{pr}/notes"


def post(session: Session, *, pr: int, marker: str, body: str) -> str:
    """Update the comment that starts with ``marker``, or create it; returns what was done."""
    forge = session.forge
    text = body if body.startswith(marker) else f"{marker}\n{body}"
    path = _comments_path(forge, pr)
    # Starts-with, not contains: a reviewer quoting the comment must not become its owner.
    mine = [
        item
        for item in session.pages(path)
        if str(item.get("body", "")).startswith(marker) and not item.get("system", False)
    ]
    if not mine:
        session.call("POST", path, json={"body": text})
        return "created"
    target = mine[0]["id"]
    if forge.kind is ForgeKind.GITHUB:
        session.call(
            "PATCH", f"/repos/{forge.project}/issues/comments/{target}", json={"body": text}
        )
    else:
        session.call("PUT", f"{path}/{target}", json={"body": text})
    return f"updated {target}"


def merged_pr(session: Session, *, sha: str, plan_workflow: str | None) -> dict[str, str]:
    """The merged PR/MR that produced commit ``sha``: number and head commit."""
    forge = session.forge
    if forge.kind is ForgeKind.GITHUB:
        pulls = session.call("GET", f"/repos/{forge.project}/commits/{sha}/pulls").json()
        merged = [p for p in pulls if p.get("merged_at")]
        if not merged:
            raise _no_pr(sha)
        found = {"number": str(merged[0]["number"]), "head_sha": merged[0]["head"]["sha"]}
        if plan_workflow:
            found["plan_run_id"] = _plan_run(session, plan_workflow, found["head_sha"])
        return found
    requests = session.call(
        "GET", f"/projects/{forge.project}/repository/commits/{sha}/merge_requests"
    ).json()
    merged = [m for m in requests if m.get("state") == "merged"]
    if not merged:
        raise _no_pr(sha)
    return {"number": str(merged[0]["iid"]), "head_sha": merged[0]["sha"]}


def _no_pr(sha: str) -> ApiError:
    return ApiError(
        f"commit {sha[:12]} did not come from a merged pull/merge request",
        hint="changes reach the tenant only through a reviewed PR; open one",
    )


def _plan_run(session: Session, workflow: str, head_sha: str) -> str:
    runs = session.call(
        "GET",
        f"/repos/{session.forge.project}/actions/workflows/{workflow}/runs",
        params={"head_sha": head_sha, "event": "pull_request", "status": "success"},
    ).json()["workflow_runs"]
    if not runs:
        raise ApiError(
            f"no successful {workflow} run for the PR head {head_sha[:12]}: "
            "there is no reviewed plan to apply",
            hint="re-run the plan workflow on the PR (or open a new PR), review, merge",
        )
    return str(max(runs, key=lambda run: run["run_number"])["id"])


def fetch_plan(
    session: Session, *, pr: int, job: str, artifact: str, ref: str | None = None
) -> bytes:
    """GitLab: ``artifact`` of the last successful ``job`` on the MR's ref (default: head)."""
    quoted = urllib.parse.quote(ref or f"refs/merge-requests/{pr}/head", safe="")
    path = f"/projects/{session.forge.project}/jobs/artifacts/{quoted}/raw/{artifact}"
    return session.call("GET", path, params={"job": job}).content


def apply_summary(exit_code: int, report: dict[str, Any] | None, log: str) -> str:
    """The apply outcome as Markdown: headline, applied/failed accounts, the error lines."""
    errors = [line for line in log.splitlines() if line.startswith(("error:", "hint:"))]
    if exit_code == EXIT_OK:
        head = "### ✅ reconciler apply: done"
    elif exit_code == EXIT_BLOCKED and any("--revocations-only" in line for line in errors):
        head = "### ⛔ reconciler apply: refused, the plan grants or changes access"
    elif exit_code == EXIT_BLOCKED:
        head = "### ⛔ reconciler apply: blocked by a guard rail"
    elif any("stale plan" in line for line in errors):
        head = "### 🛑 reconciler apply: refused, the reviewed plan is stale"
    else:
        head = f"### ❌ reconciler apply: failed (exit {exit_code})"
    out = [head, ""]
    if report is not None:
        counters = report.get("counters", {})
        out.append(
            f"{len(report.get('applied', []))} applied, {len(report.get('failed', []))} failed; "
            f"{counters.get('create_task_calls', 0)} createTask calls."
        )
        out.append("")
        out.extend(
            f"- ✓ {_md(a['action'])} {_md_code(a['account'])}" for a in report.get("applied", [])
        )
        out.extend(
            f"- ✗ {_md(f['action'])} {_md_code(f['account'])}: {_md(f['code'])} {_md(f['message'])}"
            for f in report.get("failed", [])
        )
        out.append("")
    if errors:
        shown = [printable(line) for line in errors]
        # A fence ends at a line of as many backticks: make it longer than any in the log.
        longest = max((len(run) for line in shown for run in re.findall("`+", line)), default=0)
        fence = "`" * max(3, longest + 1)
        out.extend([fence, *shown, fence, ""])
    return "\n".join(out)


def _md(value: object) -> str:
    """An API's or a report's text in a Markdown line: one line, no HTML, no code span."""
    text = printable(str(value)).replace("`", "\\`").replace("|", "\\|")
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _md_code(value: object) -> str:
    return "`" + printable(str(value)).replace("`", "'") + "`"


PROG = "python -m reconciler.ci"

DESCRIPTION = """\
CI glue for the example pipelines: one PR comment, the merged PR, the reviewed plan.

The forge comes from the variables its runner sets: GitHub (GITHUB_ACTIONS, GITHUB_API_URL,
GITHUB_REPOSITORY, GITHUB_TOKEN) or GitLab (GITLAB_CI, CI_API_V4_URL, CI_PROJECT_ID,
RECONCILER_GITLAB_TOKEN)."""

EPILOG = """exit codes: 0 success; 1 error, including a usage error (error: and hint: on
stderr)."""


def _parser() -> parsing.Parser:
    parser = parsing.Parser(prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_post_parser, _merged_pr_parser, _fetch_plan_parser, _apply_summary_parser):
        add(sub)
    return parser


def _command(sub: Any, name: str, help_text: str) -> parsing.Parser:
    parser: parsing.Parser = sub.add_parser(
        name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".", epilog=EPILOG
    )
    return parser


def _post_parser(sub: Any) -> None:
    p = _command(sub, "post", "create or update the one marked PR comment")
    p.add_argument("--pr", type=int, required=True, metavar="N", help="the PR/MR number")
    p.add_argument(
        "--marker", required=True, help="the hidden <!-- ... --> line that starts the comment"
    )
    p.add_argument(
        "--body-file", type=Path, required=True, metavar="FILE", help="the comment's Markdown"
    )


def _merged_pr_parser(sub: Any) -> None:
    p = _command(sub, "merged-pr", "the merged PR of a commit, as KEY=VALUE lines")
    p.add_argument("--sha", required=True, help="the merge commit")
    p.add_argument(
        "--plan-workflow",
        metavar="WORKFLOW",
        help="GitHub: also find this workflow's plan run on the PR head",
    )


def _fetch_plan_parser(sub: Any) -> None:
    p = _command(sub, "fetch-plan", "GitLab: download the MR's saved plan")
    p.add_argument("--pr", type=int, required=True, metavar="N", help="the MR number (iid)")
    p.add_argument("--job", required=True, help="the job that saved the plan")
    p.add_argument("--artifact", default="plan.json", help="the artifact path (default plan.json)")
    p.add_argument(
        "--ref",
        help="the MR pipelines' ref (default refs/merge-requests/N/head; merged "
        "results pipelines: refs/merge-requests/N/merge)",
    )
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="where to save it")


def _apply_summary_parser(sub: Any) -> None:
    p = _command(sub, "apply-summary", "the apply outcome as Markdown")
    p.add_argument(
        "--exit-code", type=int, required=True, metavar="CODE", help="reconciler apply's exit"
    )
    p.add_argument(
        "--report", type=Path, required=True, metavar="FILE", help="apply --format json output"
    )
    p.add_argument("--log", type=Path, required=True, metavar="FILE", help="apply's stderr")


def _read_report(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # apply stopped before it reported (stale plan, lock, config)
    return data if isinstance(data, dict) else None


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> int:
    """Run one command; returns the exit code."""
    env = os.environ if env is None else env
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exited:  # --help
        return exited.code if isinstance(exited.code, int) else EXIT_OK
    except ReconcilerError as error:  # a usage error: exit 1 with error: and hint:
        return _report(error)
    try:
        if args.command == "apply-summary":
            log = args.log.read_text(encoding="utf-8") if args.log.exists() else ""
            sys.stdout.write(apply_summary(args.exit_code, _read_report(args.report), log))
            return EXIT_OK
        with Session(forge_from_env(env), transport=transport) as session:
            if args.command == "post":
                body = args.body_file.read_text(encoding="utf-8")
                done = post(session, pr=args.pr, marker=args.marker, body=body)
                sys.stdout.write(f"comment {done} on #{args.pr}\n")
            elif args.command == "merged-pr":
                found = merged_pr(session, sha=args.sha, plan_workflow=args.plan_workflow)
                sys.stdout.write("".join(f"{key}={value}\n" for key, value in found.items()))
            else:
                content = fetch_plan(
                    session, pr=args.pr, job=args.job, artifact=args.artifact, ref=args.ref
                )
                args.out.write_bytes(content)
    except ReconcilerError as error:
        return _report(error)
    except OSError as error:  # a file given on the command line that cannot be read/written
        where = error.filename if error.filename is not None else "a file"
        return _report(
            UsageError(
                f"cannot use {where}: {error.strerror or error}",
                hint="check the file paths given (--log, --report, --body-file, --out)",
            )
        )
    return EXIT_OK


def _report(error: ReconcilerError) -> int:
    sys.stderr.write(f"error: {error.message}\n")
    if error.hint:
        sys.stderr.write(f"hint: {error.hint}\n")
    return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
