"""The federation-user API's rules as pure functions: settings, result codes, validation.

Everything the vendor does not publish (``[ASSUME]`` in ``specs/federation-api.md``) is a
field of :class:`FederationSettings`, so tests can check that the client does not depend
on a particular guess.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

MAX_USERS_PER_TASK = 100  # [DOC]
ROLE_NOT_IN_TENANT = "租间不存在该角色,角色Id: {role_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class FederationSettings:
    """Every unpublished behaviour of the federation-user API, with the sandbox's defaults."""

    pending_task_limit: int = 10
    max_roles_per_user: int = 10
    role_id_max_digits: int = 19
    account_max_len: int = 50
    name_max_len: int = 20
    error_http_status: int = 200  # the vendor documents both 200 and 500 for business failures
    unknown_task_result_code: str = "1"
    todo_seconds: float = 0.05
    doing_seconds: float = 0.1
    max_token_ttl: int = 3600
    default_token_ttl: int = 600
    create_reenables_disabled: bool = True
    seed: int = 0  # task ids and random faults are drawn from generators seeded with this

    def __post_init__(self) -> None:
        if self.error_http_status not in (200, 500):
            raise ValueError("error_http_status must be 200 or 500")
        for name in (
            "pending_task_limit",
            "max_roles_per_user",
            "role_id_max_digits",
            "account_max_len",
            "name_max_len",
            "max_token_ttl",
            "default_token_ttl",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.todo_seconds < 0 or self.doing_seconds < 0:
            raise ValueError("task timings must not be negative")


def updated_settings(
    settings: FederationSettings, changes: Mapping[str, Any]
) -> FederationSettings:
    """``settings`` with ``changes`` (JSON values) applied; ValueError names a bad key or value."""
    current = {field.name: getattr(settings, field.name) for field in dataclasses.fields(settings)}
    for key, value in changes.items():
        if key not in current:
            raise ValueError(f"unknown setting {key!r}")
        old = current[key]
        # bool is an int in Python: compare exact types so `true` cannot become a limit of 1
        if isinstance(old, float) and type(value) in (int, float):
            current[key] = float(value)
        elif type(value) is type(old):
            current[key] = value
        else:
            raise ValueError(f"setting {key!r} must be {type(old).__name__}")
    return FederationSettings(**current)


def minimum_apply_seconds(task_count: int, settings: FederationSettings) -> float:
    """The sandbox's lower bound for running ``task_count`` tasks: full waves of the pending cap."""
    if task_count <= 0:
        return 0.0
    waves = math.ceil(task_count / settings.pending_task_limit)
    return waves * (settings.todo_seconds + settings.doing_seconds)


class Action(StrEnum):
    """What one entry of a createTask asks for."""

    CREATE = "CREATE"
    MODIFY = "MODIFY"
    DISABLE = "DISABLE"


class Code(StrEnum):
    """Documented createTask result codes, plus the sandbox's run-time failure codes."""

    LIST_EMPTY = "100-102"
    LIST_TOO_LONG = "100-103"
    BAD_ACTION = "100-104"
    TASK_LIMIT = "100-113"
    ROLE_ID_TOO_LONG = "100-202"
    ACCOUNT_EMPTY = "100-204"
    ACCOUNT_TOO_LONG = "100-205"
    ACCOUNT_CHARS = "100-207"
    ROLE_ID_NOT_NUMERIC = "100-208"
    NAME_EMPTY = "100-209"
    NAME_CHARS = "100-210"
    EMAIL_EMPTY = "100-211"
    EMAIL_MALFORMED = "100-212"
    NAME_TOO_LONG = "100-213"
    EMAIL_TOO_LONG = "100-214"
    TOO_MANY_ROLES = "100-215"
    ROLE_SERVICE_FAILED = "100-216"
    ROLE_NOT_IN_TENANT = "100-217"
    # run-time failCodes are unpublished [ASSUME]; clients must treat them as opaque
    USER_EXISTS = "100-301"
    USER_NOT_FOUND = "100-302"


MESSAGES: Mapping[Code, str] = {
    Code.LIST_EMPTY: "用户管理列表为空",
    Code.LIST_TOO_LONG: "用户管理列表超过100大小限制",
    Code.BAD_ACTION: "用户管理Action字段值必填且只能是CREATE或者MODIFY或者DISABLE",
    Code.TASK_LIMIT: "租间待执行与执行中的联邦用户任务已达到限制",
    Code.ROLE_ID_TOO_LONG: "roleIds长度超过限制",
    Code.ACCOUNT_EMPTY: "userAccount为空或者为空字符串",
    Code.ACCOUNT_TOO_LONG: "userAccount长度超过限制",
    Code.ACCOUNT_CHARS: "userAccount含有特殊字符",
    Code.ROLE_ID_NOT_NUMERIC: "roleId不为数字",
    Code.NAME_EMPTY: "当action为CREATE时,userName为空或者为空字符串",
    Code.NAME_CHARS: "userName含有特殊字符",
    Code.EMAIL_EMPTY: "email为空或者为空字符串",
    Code.EMAIL_MALFORMED: "email字符或者格式不合法",
    Code.NAME_TOO_LONG: "userName长度超过限制",
    Code.EMAIL_TOO_LONG: "email长度超过限制",
    Code.TOO_MANY_ROLES: "roleIds数组大小超过限制",
    Code.ROLE_SERVICE_FAILED: "获取角色列表信息失败",
    Code.USER_EXISTS: "联邦用户账号已存在",
    Code.USER_NOT_FOUND: "联邦用户账号不存在",
}


def message(code: Code, *, role_id: str = "") -> str:
    """The resultMessage / failMessage for ``code``."""
    if code is Code.ROLE_NOT_IN_TENANT:
        return ROLE_NOT_IN_TENANT.format(role_id=role_id)
    return MESSAGES[code]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    """A documented business failure: the whole createTask is refused."""

    code: Code
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Malformed:
    """A body the service cannot even deserialise: HTTP 400."""

    reason: str


Entry = Mapping[str, Any]

_ACCOUNT = re.compile(r"[A-Za-z0-9@._-]+")
_NAME_FORBIDDEN = frozenset("\"[]'&()=;<>,")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_EMAIL_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?")
EMAIL_LOCAL_MAX = 64
EMAIL_DOMAIN_MAX = 255
EMAIL_LABEL_MAX = 63


def validate_batch(
    body: Any, settings: FederationSettings
) -> tuple[Entry, ...] | Rejection | Malformed:
    """Check a createTask body all-or-nothing; the entries as sent, or the first failure."""
    if not isinstance(body, dict):
        return Malformed(reason="body must be a JSON object")
    entries = body.get("federationUserList")
    if entries is None or entries == []:
        return _reject(Code.LIST_EMPTY)
    if not isinstance(entries, list):
        return Malformed(reason="federationUserList must be an array")
    if len(entries) > MAX_USERS_PER_TASK:
        return _reject(Code.LIST_TOO_LONG)
    for entry in entries:
        if not isinstance(entry, dict):
            return Malformed(reason="each federationUserList item must be an object")
        problem = _check_entry(entry, settings)
        if problem is not None:
            return problem
    return tuple(entries)


def first_unknown_role(entries: Sequence[Entry], catalogue: Set[str]) -> str | None:
    """The first role id used by a CREATE/MODIFY entry that the tenant does not have."""
    for entry in entries:
        if entry.get("action") == Action.DISABLE:
            continue
        for role_id in entry.get("roleIds") or ():
            if role_id not in catalogue:
                return str(role_id)
    return None


def _reject(code: Code) -> Rejection:
    return Rejection(code=code, message=message(code))


def _check_entry(entry: Entry, settings: FederationSettings) -> Rejection | Malformed | None:
    for key in ("userAccount", "userName", "email"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            return Malformed(reason=f"{key} must be a string")
    roles = entry.get("roleIds")
    if roles is not None and not (
        isinstance(roles, list) and all(isinstance(role, str) for role in roles)
    ):
        return Malformed(reason="roleIds must be an array of strings")
    if not isinstance(entry.get("action"), str) or entry["action"] not in tuple(Action):
        return _reject(Code.BAD_ACTION)
    action = Action(entry["action"])
    problem = _check_account(entry.get("userAccount"), settings)
    if problem is not None or action is Action.DISABLE:
        # DISABLE does not use name, email or roleIds, so they are not checked either
        return problem
    name, email = entry.get("userName"), entry.get("email")
    if action is Action.CREATE or name is not None:
        problem = _check_name(name, settings)
    if problem is None and (action is Action.CREATE or email is not None):
        problem = _check_email(email)
    if problem is None and roles is not None:
        problem = _check_roles(roles, settings)
    return problem


def _check_account(account: str | None, settings: FederationSettings) -> Rejection | None:
    if not account:
        return _reject(Code.ACCOUNT_EMPTY)
    if len(account) > settings.account_max_len:
        return _reject(Code.ACCOUNT_TOO_LONG)
    if not _ACCOUNT.fullmatch(account):
        return _reject(Code.ACCOUNT_CHARS)
    return None


def _check_name(name: str | None, settings: FederationSettings) -> Rejection | None:
    # an empty name on MODIFY is refused like on CREATE: no user may end up without one
    if not name:
        return _reject(Code.NAME_EMPTY)
    if len(name) > settings.name_max_len:
        return _reject(Code.NAME_TOO_LONG)
    if any(char in _NAME_FORBIDDEN for char in name):
        return _reject(Code.NAME_CHARS)
    return None


def _check_email(email: str | None) -> Rejection | None:
    if not email:
        return _reject(Code.EMAIL_EMPTY)
    local, at, domain = email.rpartition("@")
    if at and (
        len(local) > EMAIL_LOCAL_MAX
        or len(domain) > EMAIL_DOMAIN_MAX
        or len(domain.split(".")[0]) > EMAIL_LABEL_MAX
    ):
        return _reject(Code.EMAIL_TOO_LONG)
    labels = domain.split(".")
    if (
        not at
        or not _EMAIL_LOCAL.fullmatch(local)
        or len(labels) < 2
        or not all(_EMAIL_LABEL.fullmatch(label) for label in labels)
    ):
        return _reject(Code.EMAIL_MALFORMED)
    return None


def _check_roles(roles: Sequence[str], settings: FederationSettings) -> Rejection | None:
    if len(roles) > settings.max_roles_per_user:
        return _reject(Code.TOO_MANY_ROLES)
    for role_id in roles:
        if len(role_id) > settings.role_id_max_digits:
            return _reject(Code.ROLE_ID_TOO_LONG)
        # isdigit() accepts non-ASCII digits such as '٣'; the service wants 0-9 only
        if not (role_id.isascii() and role_id.isdigit()):
            return _reject(Code.ROLE_ID_NOT_NUMERIC)
    return None
