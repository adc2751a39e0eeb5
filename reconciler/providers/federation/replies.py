"""What the federation API's answers mean: createTask result codes and queryTask states.

Each documented createTask ``resultCode`` gets an English message and, where possible,
the entries it blames (:class:`BatchRefused`). The API names the code but never the entry
that broke the rule (except 100-217, which gives the role id). Validation is
all-or-nothing, so the entries breaking the rule, checked locally against the documented
limits, are the ones to blame; the message names the first. Messages are built from
codes, limits and account names only: never from the server's text or a header.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from reconciler.errors import FederationError, TransportError
from reconciler.values import frozen

Entry = Mapping[str, object]

MAX_ENTRIES = 100  # [DOC]
MAX_ROLE_ID_DIGITS = 19  # [ASSUME] role ids are 19-digit strings
MAX_ACCOUNT_LENGTH = 50  # [SIBLING]
MAX_USER_NAME_LENGTH = 20  # [SIBLING]
MAX_ROLE_IDS = 10  # [ASSUME]
MAX_EMAIL_LOCAL, MAX_EMAIL_DOMAIN, MAX_EMAIL_LABEL = 64, 255, 63  # [SIBLING]
ACTIONS = frozenset({"CREATE", "MODIFY", "DISABLE"})

_ACCOUNT_CHARS = re.compile(r"[A-Za-z0-9@._-]*")
_USER_NAME_FORBIDDEN = frozenset("\"[]'&()=;<>,")
_EMAIL_SHAPE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# The API writes "租间不存在该角色,角色Id: {roleId}"; fall back to the last long digit run.
_ROLE_ID_LABELLED = re.compile(r"(?:角色\s*Id|role\s*id)\s*[:：]?\s*(\d+)", re.IGNORECASE)
_LONG_DIGITS = re.compile(r"\d{5,}")

FIX_ENTRY = "fix that entry in the desired state (or the input it came from), then apply again"


def _text(entry: Entry, key: str) -> str | None:
    value = entry.get(key)
    return value if isinstance(value, str) else None


def _role_ids(entry: Entry) -> tuple[str, ...]:
    value = entry.get("roleIds")
    if isinstance(value, list | tuple):
        return tuple(str(role) for role in value)
    return ()


def _uses_details(entry: Entry) -> bool:
    # DISABLE ignores userName, email and roleIds, so they cannot be what the API rejected.
    return entry.get("action") != "DISABLE"


def _bad_email_length(email: str) -> bool:
    local, _, domain = email.partition("@")
    first_label = domain.split(".", 1)[0]
    return (
        len(local) > MAX_EMAIL_LOCAL
        or len(domain) > MAX_EMAIL_DOMAIN
        or len(first_label) > MAX_EMAIL_LABEL
    )


def _empty_email(entry: Entry) -> bool:
    email = _text(entry, "email")
    if entry.get("action") == "CREATE":
        return not email
    return _uses_details(entry) and "email" in entry and not email


@frozen
class ResultCode:
    """One documented createTask code: what it means, what to do, which entry breaks it."""

    code: str
    meaning: str
    hint: str
    culprit: Callable[[Entry], bool] | None = None


RESULT_CODES: Mapping[str, ResultCode] = {
    rc.code: rc
    for rc in (
        ResultCode(
            code="100-102",
            meaning="the user list sent was empty",
            hint="this is a reconciler bug: it should never send an empty batch; please report it",
        ),
        ResultCode(
            code="100-103",
            meaning=f"the user list sent had more than {MAX_ENTRIES} entries",
            hint="this is a reconciler bug: batches must be split at 100; please report it",
        ),
        ResultCode(
            code="100-104",
            meaning="an entry's action is missing or not CREATE, MODIFY or DISABLE",
            hint=FIX_ENTRY,
            culprit=lambda e: e.get("action") not in ACTIONS,
        ),
        ResultCode(
            code="100-113",
            meaning="the tenant already has the maximum number of pending and running "
            "federation-user tasks",
            hint="wait until this run's outstanding tasks are DONE (queryTask), then send again",
        ),
        ResultCode(
            code="100-202",
            meaning=f"a roleId is longer than {MAX_ROLE_ID_DIGITS} digits",
            hint=FIX_ENTRY,
            culprit=lambda e: (
                _uses_details(e) and any(len(r) > MAX_ROLE_ID_DIGITS for r in _role_ids(e))
            ),
        ),
        ResultCode(
            code="100-204",
            meaning="an entry's userAccount is missing or empty",
            hint=FIX_ENTRY,
            culprit=lambda e: not _text(e, "userAccount"),
        ),
        ResultCode(
            code="100-205",
            meaning=f"a userAccount is longer than {MAX_ACCOUNT_LENGTH} characters",
            hint=FIX_ENTRY,
            culprit=lambda e: len(_text(e, "userAccount") or "") > MAX_ACCOUNT_LENGTH,
        ),
        ResultCode(
            code="100-207",
            meaning="a userAccount contains characters other than A-Z a-z 0-9 @ . _ -",
            hint=FIX_ENTRY,
            culprit=lambda e: not _ACCOUNT_CHARS.fullmatch(_text(e, "userAccount") or ""),
        ),
        ResultCode(
            code="100-208",
            meaning="a roleId is not numeric",
            hint=FIX_ENTRY,
            culprit=lambda e: (
                _uses_details(e) and any(not (r.isascii() and r.isdigit()) for r in _role_ids(e))
            ),
        ),
        ResultCode(
            code="100-209",
            meaning="a CREATE entry has no userName",
            hint=FIX_ENTRY,
            culprit=lambda e: e.get("action") == "CREATE" and not _text(e, "userName"),
        ),
        ResultCode(
            code="100-210",
            meaning="a userName contains one of the forbidden characters \" [ ] ' & ( ) = ; < > ,",
            hint=FIX_ENTRY,
            culprit=lambda e: (
                _uses_details(e)
                and bool(_USER_NAME_FORBIDDEN.intersection(_text(e, "userName") or ""))
            ),
        ),
        ResultCode(
            code="100-211",
            meaning="an entry's email is missing or empty",
            hint=FIX_ENTRY,
            culprit=_empty_email,
        ),
        ResultCode(
            code="100-212",
            meaning="an email is malformed",
            hint=FIX_ENTRY,
            culprit=lambda e: (
                _uses_details(e)
                and bool(_text(e, "email"))
                and not _EMAIL_SHAPE.fullmatch(_text(e, "email") or "")
            ),
        ),
        ResultCode(
            code="100-213",
            meaning=f"a userName is longer than {MAX_USER_NAME_LENGTH} characters",
            hint=FIX_ENTRY,
            culprit=lambda e: (
                _uses_details(e) and len(_text(e, "userName") or "") > MAX_USER_NAME_LENGTH
            ),
        ),
        ResultCode(
            code="100-214",
            meaning=f"an email is too long (local part {MAX_EMAIL_LOCAL}, domain "
            f"{MAX_EMAIL_DOMAIN}, first domain label {MAX_EMAIL_LABEL} characters at most)",
            hint=FIX_ENTRY,
            culprit=lambda e: _uses_details(e) and _bad_email_length(_text(e, "email") or ""),
        ),
        ResultCode(
            code="100-215",
            meaning="an entry has more roleIds than the API allows",
            hint=f"give the entry at most {MAX_ROLE_IDS} roles (the assumed limit), then apply "
            "again",
            culprit=lambda e: _uses_details(e) and len(_role_ids(e)) > MAX_ROLE_IDS,
        ),
        ResultCode(
            code="100-216",
            meaning="the federation API could not read the tenant's roles (its role service "
            "failed)",
            hint="this is usually transient: apply again in a few minutes",
        ),
        ResultCode(
            code="100-217",
            meaning="a roleId does not exist in the tenant",
            hint="copy the role ids from the tenant's console into the desired state, then "
            "apply again",
        ),
    )
}


class BatchRefused(FederationError):
    """createTask refused the whole batch (``resultCode`` other than ``"0"``); no task exists.

    ``culprits`` are the accounts the refusal blames: every entry using the role id that
    100-217 names (``role_id``), or every entry breaking the rule of a documented code,
    checked locally. Empty when the refusal names nothing that identifies entries (an
    undocumented code, or a rule the local checks do not see broken).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        http_status: int,
        culprits: tuple[str, ...] = (),
        role_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(
            message,
            code=code,
            http_status=http_status,
            account=culprits[0] if culprits else None,
            hint=hint,
        )
        self.culprits = culprits
        self.role_id = role_id


@frozen
class CallCounts:
    """Requests that reached the federation API (answered, or possibly received), per call.

    A request that never left this process (connection refused, TLS failure, no token)
    is not counted; client-side retries that reached the server are.
    """

    create_task: int = 0
    query_task: int = 0


def _name(entries: Sequence[Entry], index: int) -> tuple[str, str | None]:
    """Describe entry ``index`` for a message, and return its account when it has one."""
    account = _text(entries[index], "userAccount")
    if account:
        return f"account '{account}' (entry {index + 1})", account
    return f"entry {index + 1}", None


def create_task_error(
    code: str, *, http_status: int, entries: Sequence[Entry], result_message: str
) -> BatchRefused:
    """The error for a createTask ``resultCode`` other than ``"0"``, blaming what it can."""
    known = RESULT_CODES.get(code)
    if known is None:
        return BatchRefused(
            f"createTask failed with undocumented resultCode {code} (HTTP {http_status})",
            code=code,
            http_status=http_status,
            hint="look the code up in the federation API documentation or ask the vendor",
        )
    message = f"createTask rejected the batch: {known.meaning} (resultCode {code})"
    culprits: tuple[str, ...] = ()
    role_id: str | None = None
    if code == "100-103":
        message += f"; {len(entries)} entries were sent"
    elif code == "100-217":
        message, culprits, role_id = _unknown_role(message, entries, result_message)
    elif known.culprit is not None:
        indexes = [i for i, e in enumerate(entries) if known.culprit(e)]
        if indexes:
            described, _ = _name(entries, indexes[0])
            message += f"; first offending entry: {described}"
            culprits = _accounts(entries, indexes)
    return BatchRefused(
        message,
        code=code,
        http_status=http_status,
        culprits=culprits,
        role_id=role_id,
        hint=known.hint,
    )


def _accounts(entries: Sequence[Entry], indexes: Sequence[int]) -> tuple[str, ...]:
    """The accounts of ``entries[i]`` for each index (entries without one are skipped)."""
    named = (_text(entries[i], "userAccount") for i in indexes)
    return tuple(dict.fromkeys(account for account in named if account))


def _unknown_role(
    message: str, entries: Sequence[Entry], result_message: str
) -> tuple[str, tuple[str, ...], str | None]:
    """Name the role id the API reported (``角色Id: {roleId}``) and every account using it."""
    labelled = _ROLE_ID_LABELLED.search(result_message)
    candidates = _LONG_DIGITS.findall(result_message)
    if labelled is not None:
        role_id = labelled.group(1)
    elif candidates:
        role_id = candidates[-1]
    else:
        return message, (), None
    indexes = [
        i for i, entry in enumerate(entries) if _uses_details(entry) and role_id in _role_ids(entry)
    ]
    message += f"; role {role_id}"
    if indexes:
        message += " is used by " + ", ".join(_name(entries, i)[0] for i in indexes)
    return message, _accounts(entries, indexes), role_id


class TaskState(enum.Enum):
    """Where an asynchronous createTask task is."""

    TODO = "TODO"
    DOING = "DOING"
    DONE = "DONE"


@frozen
class TaskFailure:
    """One entry of a task that failed at run time; codes and messages are opaque strings."""

    account: str
    fail_code: str
    fail_message: str
    entry: Mapping[str, object]  # the entry as sent, read-only (lists become tuples)


@frozen
class TaskStatus:
    """What queryTask reports; when DONE, every entry not in ``failures`` succeeded."""

    task_id: str
    status: TaskState
    remark: str
    failures: tuple[TaskFailure, ...] = ()


def _opaque(value: object) -> str:
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""


def _freeze(value: object) -> object:
    if isinstance(value, dict):
        return MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(item) for item in value)
    return value


def task_status(task_id: str, body: Mapping[str, Any]) -> TaskStatus:
    """Read a successful queryTask body; anything missing makes it unusable."""

    def unusable(what: str) -> TransportError:
        return TransportError(
            f"queryTask for task {task_id} answered resultCode 0 but {what}",
            maybe_sent=False,
            hint="the federation API's answer is not what its documentation describes",
        )

    info = body.get("taskInfo")
    try:
        state = TaskState(info.get("status") if isinstance(info, dict) else None)
    except ValueError:
        raise unusable("taskInfo.status is not TODO, DOING or DONE") from None
    fail_list = body.get("failDataList") or []
    if not isinstance(fail_list, list):
        raise unusable("failDataList is not a list")
    failures = []
    for item in fail_list:
        entry = item.get("federationUser") if isinstance(item, dict) else None
        account = entry.get("userAccount") if isinstance(entry, dict) else None
        if not isinstance(account, str) or not account:
            raise unusable("a failDataList item has no federationUser.userAccount")
        fixed = _freeze(entry)
        assert isinstance(fixed, Mapping)  # a dict freezes to a mapping
        failures.append(
            TaskFailure(
                account=account,
                fail_code=_opaque(item.get("failCode")),
                fail_message=_opaque(item.get("failMessage")),
                entry=fixed,
            )
        )
    remark = info.get("remark") if isinstance(info, dict) else None
    return TaskStatus(
        task_id=task_id,
        status=state,
        remark=remark if isinstance(remark, str) else "",
        failures=tuple(failures),
    )
