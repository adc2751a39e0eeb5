"""Volcengine HMAC-SHA256 "V4" signing: ``sign`` for clients, ``verify`` for the sandbox.

``sign`` and ``verify`` are pure: time, keys and bytes come in as arguments, and nothing
here imports httpx (``auth.V4Auth`` plugs ``sign`` into it). Secrets live only in
:class:`Credentials`, whose repr hides them; no function here formats a secret into a message.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence

from reconciler.values import field, frozen

ALGORITHM = "HMAC-SHA256"
X_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_SKEW_SECONDS = 900
# What the vendor SDKs sign; a server must accept any list that includes host and x-date.
DEFAULT_SIGNED_HEADERS = ("content-type", "host", "x-content-sha256", "x-date")
_UNRESERVED = "-_.~"  # with A-Za-z0-9, left bare by urllib.parse.quote
_AUTHORIZATION = re.compile(
    r"^HMAC-SHA256 Credential=(?P<ak>[^/\s,]+)/(?P<date>\d{8})/(?P<region>[^/\s,]+)"
    r"/(?P<service>[^/\s,]+)/request,\s*SignedHeaders=(?P<headers>[a-z0-9\-;]+),"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


@frozen
class Credentials:
    """An access key pair (plus optional STS token); the secret parts never show in repr."""

    access_key: str
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def utc_now() -> dt.datetime:
    """The current time in UTC (the default clock)."""
    return dt.datetime.now(dt.UTC)


def format_x_date(moment: dt.datetime) -> str:
    """Format an aware datetime as ``YYYYMMDDTHHMMSSZ`` in UTC."""
    return moment.astimezone(dt.UTC).strftime(X_DATE_FORMAT)


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Percent-encode keys and values (space = %20), sort, and join as ``k=v&...``."""
    encoded = sorted(
        (urllib.parse.quote(key, safe=_UNRESERVED), urllib.parse.quote(value, safe=_UNRESERVED))
        for key, value in pairs
    )
    return "&".join(f"{key}={value}" for key, value in encoded)


def canonical_host(host: str) -> str:
    """The Host value as signed: the default ports 80 and 443 are dropped."""
    for default_port in (":80", ":443"):
        if host.endswith(default_port):
            return host.removesuffix(default_port)
    return host


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def _signature(
    *,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    signed_headers: Iterable[str],
    body_sha256: str,
    secret_key: str,
    x_date: str,
    scope: str,
) -> str:
    names = sorted(name.lower() for name in signed_headers)
    lowered = {name.lower(): value.strip() for name, value in headers.items()}
    lowered["host"] = canonical_host(lowered.get("host", ""))
    header_lines = "".join(f"{name}:{lowered[name]}\n" for name in names)
    canonical_request = "\n".join(
        (
            method.upper(),
            path or "/",
            canonical_query(query),
            header_lines,
            ";".join(names),
            body_sha256,
        )
    )
    string_to_sign = "\n".join(
        (ALGORITHM, x_date, scope, hashlib.sha256(canonical_request.encode("utf-8")).hexdigest())
    )
    date, region, service, terminal = scope.split("/")
    key = secret_key.encode("utf-8")
    for part in (date, region, service, terminal):
        key = _hmac(key, part)
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def sign(
    *,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
    region: str,
    service: str,
    x_date: str,
    session_token: str | None = None,
    signed_headers: Sequence[str] = DEFAULT_SIGNED_HEADERS,
) -> dict[str, str]:
    """The headers to add so that the request is signed: X-Date, X-Content-Sha256, Authorization.

    ``headers`` must hold every other header in ``signed_headers`` (Content-Type and Host by
    default); X-Security-Token is added, and signed, when ``session_token`` is given.
    """
    added = {"X-Date": x_date, "X-Content-Sha256": hashlib.sha256(body).hexdigest()}
    names = [name.lower() for name in signed_headers]
    if session_token:
        added["X-Security-Token"] = session_token
        names.append("x-security-token")
    scope = f"{x_date[:8]}/{region}/{service}/request"
    signature = _signature(
        method=method,
        path=path,
        query=query,
        headers={**headers, **added},
        signed_headers=names,
        body_sha256=added["X-Content-Sha256"],
        secret_key=secret_key,
        x_date=x_date,
        scope=scope,
    )
    added["Authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={';'.join(sorted(names))}, "
        f"Signature={signature}"
    )
    return added


class Verdict(enum.Enum):
    """What ``verify`` concluded about a request's signature, in the order it checks."""

    OK = "ok"
    MISSING = "missing"  # no Authorization header
    MALFORMED = "malformed"  # unparseable Authorization, or host/x-date not signed or absent
    WRONG_SCOPE = "wrong_scope"  # the credential scope names another region or service
    UNKNOWN_KEY = "unknown_key"
    BAD_TIMESTAMP = "bad_timestamp"  # X-Date unparseable or more than the allowed skew off
    MISMATCH = "mismatch"


@frozen
class Verification:
    """The verdict plus what the Authorization header named (empty when unparseable)."""

    verdict: Verdict
    access_key: str = ""
    region: str = ""
    service: str = ""


def verify(
    *,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    secrets: Mapping[str, str],
    now: dt.datetime,
    service: str | None = None,
    region: str | None = None,
    max_skew_seconds: int = MAX_SKEW_SECONDS,
) -> Verification:
    """Recompute the signature of a received request from its own SignedHeaders list.

    ``headers`` are keyed by lower-case name; ``secrets`` maps access key to secret key.
    The body hash is computed from ``body``, never trusted from X-Content-Sha256. When
    ``service`` or ``region`` is given, a credential scope naming another one is refused
    (WRONG_SCOPE), as the real gateway refuses a request signed for another endpoint.
    """
    authorization = headers.get("authorization", "").strip()
    if not authorization:
        return Verification(verdict=Verdict.MISSING)
    match = _AUTHORIZATION.match(authorization)
    if match is None:
        return Verification(verdict=Verdict.MALFORMED)
    named = {"access_key": match["ak"], "region": match["region"], "service": match["service"]}
    signed = match["headers"].split(";")
    x_date = headers.get("x-date", "")
    if (
        "host" not in signed
        or "x-date" not in signed
        or any(name not in headers for name in signed)
    ):
        return Verification(verdict=Verdict.MALFORMED, **named)
    if (service is not None and match["service"] != service) or (
        region is not None and match["region"] != region
    ):
        return Verification(verdict=Verdict.WRONG_SCOPE, **named)
    secret = secrets.get(match["ak"])
    if secret is None:
        return Verification(verdict=Verdict.UNKNOWN_KEY, **named)
    try:
        sent_at = dt.datetime.strptime(x_date, X_DATE_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        return Verification(verdict=Verdict.BAD_TIMESTAMP, **named)
    if abs((now - sent_at).total_seconds()) > max_skew_seconds or match["date"] != x_date[:8]:
        return Verification(verdict=Verdict.BAD_TIMESTAMP, **named)
    expected = _signature(
        method=method,
        path=path,
        query=query,
        headers=headers,
        signed_headers=signed,
        body_sha256=hashlib.sha256(body).hexdigest(),
        secret_key=secret,
        x_date=x_date,
        scope=f"{match['date']}/{match['region']}/{match['service']}/request",
    )
    if not hmac.compare_digest(expected, match["signature"]):
        return Verification(verdict=Verdict.MISMATCH, **named)
    return Verification(verdict=Verdict.OK, **named)
