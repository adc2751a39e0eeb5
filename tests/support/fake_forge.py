"""A fake GitHub and GitLab REST API for the pipeline tests: comments, merges, plan runs.

Only the endpoints ``python -m reconciler.cli.ci`` calls, under ``/gh`` (GitHub) and
``/gl/api/v4`` (GitLab), checking the token like the real ones and recording every call.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "forge-test-token"
OWNER_REPO = "acme/identity"
PROJECT_ID = "4242"


@dataclass
class Forge:
    """What the fake GitHub/GitLab API knows and what it was told."""

    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    merges: dict[str, tuple[int, str]] = field(default_factory=dict)  # merge sha → (PR, head)
    plan_runs: list[tuple[int, str]] = field(default_factory=list)  # (run id, head sha)
    mr_artifacts: dict[int, bytes] = field(default_factory=dict)  # MR iid → plan.json
    calls: list[str] = field(default_factory=list)
    next_id: int = 1000


def _handler(forge: Forge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            """Quiet."""

        def _send(self, status: int, payload: Any, *, raw: bytes | None = None) -> None:
            body = raw if raw is not None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            return dict(json.loads(self.rfile.read(length) or b"{}"))

        def _route(self, method: str) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            parts = url.path.strip("/").split("/")  # %2F inside a segment stays encoded
            forge.calls.append(f"{method} {url.path}")
            if parts[0] == "gh":
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._send(401, {"message": "Bad credentials"})
                return self._github(method, parts[1:], query)
            if self.headers.get("PRIVATE-TOKEN") != TOKEN:
                return self._send(401, {"message": "401 Unauthorized"})
            return self._gitlab(method, parts[3:], query)  # after gl/api/v4

        def _page(self, items: list[dict[str, Any]], query: Mapping[str, str]) -> None:
            size, page = int(query.get("per_page", 30)), int(query.get("page", 1))
            self._send(200, items[(page - 1) * size : page * size])

        def _comment(self, pr: int, body: str) -> None:
            forge.next_id += 1
            forge.comments.setdefault(pr, []).append(
                {"id": forge.next_id, "body": body, "system": False}
            )
            self._send(201, forge.comments[pr][-1])

        def _edit(self, comment_id: int, body: str) -> None:
            for comments in forge.comments.values():
                for item in comments:
                    if item["id"] == comment_id:
                        item["body"] = body
                        return self._send(200, item)
            return self._send(404, {"message": "Not Found"})

        def _github(self, method: str, parts: list[str], query: Mapping[str, str]) -> None:
            assert "/".join(parts[1:3]) == OWNER_REPO, parts
            rest = parts[3:]
            match method, rest:
                case "GET", ["issues", pr, "comments"]:
                    return self._page(forge.comments.get(int(pr), []), query)
                case "POST", ["issues", pr, "comments"]:
                    return self._comment(int(pr), self._body()["body"])
                case "PATCH", ["issues", "comments", comment_id]:
                    return self._edit(int(comment_id), self._body()["body"])
                case "GET", ["commits", sha, "pulls"]:
                    pr_number, head = forge.merges.get(sha, (0, ""))
                    pulls = (
                        [
                            {
                                "number": pr_number,
                                "merged_at": "2024-05-01T10:00:00Z",
                                "head": {"sha": head},
                            }
                        ]
                        if pr_number
                        else []
                    )
                    return self._send(200, pulls)
                case "GET", ["actions", "workflows", "reconciler-plan.yml", "runs"]:
                    assert (query["event"], query["status"]) == ("pull_request", "success")
                    runs = [
                        {"id": run_id, "run_number": run_id}
                        for run_id, head in forge.plan_runs
                        if head == query["head_sha"]
                    ]
                    return self._send(200, {"total_count": len(runs), "workflow_runs": runs})
            return self._send(404, {"message": "Not Found"})

        def _gitlab(self, method: str, parts: list[str], query: Mapping[str, str]) -> None:
            assert parts[:2] == ["projects", PROJECT_ID], parts
            rest = parts[2:]
            match method, rest:
                case "GET", ["merge_requests", iid, "notes"]:
                    return self._page(forge.comments.get(int(iid), []), query)
                case "POST", ["merge_requests", iid, "notes"]:
                    return self._comment(int(iid), self._body()["body"])
                case "PUT", ["merge_requests", _iid, "notes", note_id]:
                    return self._edit(int(note_id), self._body()["body"])
                case "GET", ["repository", "commits", sha, "merge_requests"]:
                    iid, head = forge.merges.get(sha, (0, ""))
                    found = [{"iid": iid, "state": "merged", "sha": head}] if iid else []
                    return self._send(200, found)
                case "GET", ["jobs", "artifacts", ref, "raw", "plan.json"]:
                    match_ = re.fullmatch(r"refs%2Fmerge-requests%2F(\d+)%2Fhead", ref)
                    assert match_ is not None, ref
                    assert query["job"] == "reconciler-plan"
                    content = forge.mr_artifacts.get(int(match_.group(1)))
                    if content is None:
                        return self._send(404, {"message": "404 Not Found"})
                    return self._send(200, None, raw=content)
            return self._send(404, {"message": "404 Not Found"})

        def do_GET(self) -> None:
            """Route."""
            self._route("GET")

        def do_POST(self) -> None:
            """Route."""
            self._route("POST")

        def do_PATCH(self) -> None:
            """Route."""
            self._route("PATCH")

        def do_PUT(self) -> None:
            """Route."""
            self._route("PUT")

    return Handler


@contextmanager
def serving() -> Iterator[tuple[Forge, str]]:
    """The fake forge API on loopback for the block: (its records, base URL)."""
    records = Forge()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(records))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield records, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
