"""V4 signing: the published vector, agreement with the vendor's signer, and V4Auth on the wire."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import urllib.parse

import httpx
import pytest
from volcenginesdkcore.signv4 import SignerV4

from reconciler.providers.cloudidentity import signing
from reconciler.providers.cloudidentity.auth import V4Auth

VECTOR_AK = "AKLTMjI2ODVlYzI3ZGY1NGU4ZjhjYWRjMTlmNTM5OTZkYzE"
VECTOR_SK = "TnpCak5XWXpZV1U0WkRaaE5ERmxaR0ZpTmpjeVkyUXlZek0wTWpJMU1qWQ=="
NOW = dt.datetime(2025, 3, 10, 10, 10, 42, tzinfo=dt.UTC)
SECRET = "s3cr3t-Sk-value"


def test_published_vector_gives_the_published_signature() -> None:
    """The vendor's signing example (spec section 2) yields its exact signature."""
    added = signing.sign(
        method="GET",
        path="/",
        query=[
            ("Action", "ListUsers"),
            ("Version", "2018-01-01"),
            ("Limit", "10"),
            ("Offset", "0"),
        ],
        headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Host": "iam.volcengineapi.com",
        },
        body=b"",
        access_key=VECTOR_AK,
        secret_key=VECTOR_SK,
        region="cn-north-1",
        service="iam",
        x_date="20201230T081805Z",
    )
    assert added["Authorization"] == (
        f"HMAC-SHA256 Credential={VECTOR_AK}/20201230/cn-north-1/iam/request, "
        "SignedHeaders=content-type;host;x-content-sha256;x-date, "
        "Signature=28eeabbbd726b87002e0fe58ad8c1c768e619b06e2646f35b6ad7ed029a6d8a7"
    )
    assert added["X-Content-Sha256"] == hashlib.sha256(b"").hexdigest()


_ALPHABET = "aZ09-_.~ !*'();:@&=+$,/?#[]%\"<>^`{|}\\éü中文🙂"


def _text(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(low, high)))


def _case(rng: random.Random) -> dict[str, object]:
    """One random request: query with awkward characters, body, region, host, token."""
    query = {_text(rng, 1, 8): _text(rng, 0, 12) for _ in range(rng.randint(0, 6))}
    query["Action"] = rng.choice(["ListUserProvisioningEvents", "RetryUserProvisioningEvent"])
    query["Version"] = "2023-01-01"
    return {
        "method": rng.choice(["GET", "POST", "PUT"]),
        "query": query,
        "body": json.dumps({"Name": _text(rng, 0, 40)}, ensure_ascii=rng.random() < 0.5)
        if rng.random() < 0.8
        else "",
        "region": rng.choice(["cn-beijing", "cn-shanghai", "ap-southeast-1", "cn-north-1"]),
        "service": rng.choice(["cloudidentity", "iam", "sts"]),
        "host": rng.choice(
            [
                "open.volcengineapi.com",
                "open.volcengineapi.com:443",
                "127.0.0.1:80",
                "127.0.0.1:8443",
                "[::1]:9000",
            ]
        ),
        "content_type": rng.choice(
            ["application/json; charset=utf-8", "application/x-www-form-urlencoded; charset=utf-8"]
        ),
        # Tokens are base64-like; header values are trimmed by the spec, not by the SDK.
        "token": rng.choice([None, "STS2" + "".join(rng.choices("Aa0+/=_-", k=24))]),
        "ak": "AKLT" + "".join(rng.choices("ABCDEFabcdef0123456789", k=20)),
        "sk": _text(rng, 8, 40),
    }


@pytest.mark.parametrize("seed", range(250))
def test_agrees_with_the_vendor_signer(seed: int) -> None:
    """Our signature equals volcenginesdkcore's SignerV4 on a random request, and verifies."""
    case = _case(random.Random(seed))
    body = str(case["body"])
    query = dict(case["query"])  # type: ignore[call-overload]  # a case's values are `object`
    vendor_headers: dict[str, str] = {
        "Content-Type": str(case["content_type"]),
        "Host": str(case["host"]),
    }
    SignerV4.sign(
        "/",
        case["method"],
        vendor_headers,
        body,
        [],
        query,
        case["ak"],
        case["sk"],
        case["region"],
        case["service"],
        case["token"],
    )
    ours = signing.sign(
        method=str(case["method"]),
        path="/",
        query=list(query.items()),
        headers={"Content-Type": str(case["content_type"]), "Host": str(case["host"])},
        body=body.encode("utf-8"),
        access_key=str(case["ak"]),
        secret_key=str(case["sk"]),
        region=str(case["region"]),
        service=str(case["service"]),
        x_date=vendor_headers["X-Date"],  # the vendor reads its own clock: reuse its moment
        session_token=case["token"],  # type: ignore[arg-type]  # str or None, typed `object`
    )
    assert ours["Authorization"] == vendor_headers["Authorization"]
    assert ours["X-Content-Sha256"] == vendor_headers["X-Content-Sha256"]
    assert ours.get("X-Security-Token") == vendor_headers.get("X-Security-Token")
    sent_at = dt.datetime.strptime(vendor_headers["X-Date"], signing.X_DATE_FORMAT)
    verdict = signing.verify(
        method=str(case["method"]),
        path="/",
        query=list(query.items()),
        headers={name.lower(): value for name, value in vendor_headers.items()},
        body=body.encode("utf-8"),
        secrets={str(case["ak"]): str(case["sk"])},
        now=sent_at.replace(tzinfo=dt.UTC),
    ).verdict
    assert verdict is signing.Verdict.OK


def _capture(credentials: signing.Credentials) -> tuple[httpx.Client, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    auth = V4Auth(credentials, region="cn-beijing", service="cloudidentity", clock=lambda: NOW)
    return httpx.Client(transport=httpx.MockTransport(handler), auth=auth), seen


def _verify_received(request: httpx.Request, secrets: dict[str, str]) -> signing.Verdict:
    """Verify a request as a server would: from the raw query, headers and bytes received."""
    return signing.verify(
        method=request.method,
        path=request.url.path,
        query=urllib.parse.parse_qsl(request.url.query.decode(), keep_blank_values=True),
        headers={name.lower(): value for name, value in request.headers.items()},
        body=request.content,
        secrets=secrets,
        now=NOW,
        service="cloudidentity",
    ).verdict


def test_v4auth_signs_the_bytes_actually_sent() -> None:
    """The body hash and signature cover exactly the bytes httpx put on the wire."""
    client, seen = _capture(signing.Credentials(access_key="AK1", secret_key=SECRET))
    client.post(
        "https://open.volcengineapi.com/",
        params={"Action": "ListUserProvisioningEvents", "Version": "2023-01-01", "Q": "a b+c/é&=~"},
        json={"QueryString": "张三 & co", "PageSize": 100},
    )
    (request,) = seen
    assert request.headers["x-content-sha256"] == hashlib.sha256(request.content).hexdigest()
    assert request.headers["x-date"] == "20250310T101042Z"
    assert (
        "SignedHeaders=content-type;host;x-content-sha256;x-date,"
        in (request.headers["authorization"])
    )
    assert "x-security-token" not in request.headers
    assert _verify_received(request, {"AK1": SECRET}) is signing.Verdict.OK


def test_v4auth_signs_the_session_token() -> None:
    """An STS token is sent as X-Security-Token and is part of the signature."""
    credentials = signing.Credentials(access_key="AK1", secret_key=SECRET, session_token="tok")
    client, seen = _capture(credentials)
    client.post("http://127.0.0.1:8080/?Action=X&Version=2023-01-01", content=b"{}")
    (request,) = seen
    assert request.headers["x-security-token"] == "tok"
    assert "x-date;x-security-token, Signature=" in request.headers["authorization"]
    assert _verify_received(request, {"AK1": SECRET}) is signing.Verdict.OK


def test_signature_covers_the_body() -> None:
    """A body changed after signing no longer verifies."""
    client, seen = _capture(signing.Credentials(access_key="AK1", secret_key=SECRET))
    client.post("https://h/?Action=X&Version=1", content=b'{"a":1}')
    (request,) = seen
    tampered = httpx.Request(
        request.method, request.url, headers=request.headers, content=b'{"a":2}'
    )
    assert _verify_received(tampered, {"AK1": SECRET}) is signing.Verdict.MISMATCH


def test_secrets_stay_out_of_repr() -> None:
    """Neither Credentials nor V4Auth shows the secret key or the session token."""
    credentials = signing.Credentials(access_key="AK1", secret_key=SECRET, session_token="tok-9")
    auth = V4Auth(credentials, region="cn-beijing", service="cloudidentity")
    for text in (repr(credentials), str(credentials), repr(auth), str(auth)):
        assert SECRET not in text
        assert "tok-9" not in text
        assert "AK1" in text


def _headers(**changes: str | None) -> dict[str, str]:
    headers = {"content-type": "application/json", "host": "h"}
    headers.update(
        signing.sign(
            method="POST",
            path="/",
            query=[],
            headers=headers,
            body=b"{}",
            access_key="AK1",
            secret_key=SECRET,
            region="r",
            service="cloudidentity",
            x_date="20250310T101042Z",
        )
    )
    headers = {name.lower(): value for name, value in headers.items()}
    for name, value in changes.items():
        if value is None:
            headers.pop(name.replace("_", "-"), None)
        else:
            headers[name.replace("_", "-")] = value
    return headers


@pytest.mark.parametrize(
    ("headers", "secrets", "now", "verdict"),
    [
        (_headers(), {"AK1": SECRET}, NOW, signing.Verdict.OK),
        (_headers(), {"AK1": SECRET}, NOW + dt.timedelta(seconds=900), signing.Verdict.OK),
        (_headers(authorization=None), {"AK1": SECRET}, NOW, signing.Verdict.MISSING),
        (_headers(authorization="Bearer x"), {"AK1": SECRET}, NOW, signing.Verdict.MALFORMED),
        (_headers(x_date=None), {"AK1": SECRET}, NOW, signing.Verdict.MALFORMED),
        (_headers(), {"AK2": SECRET}, NOW, signing.Verdict.UNKNOWN_KEY),
        (
            _headers(),
            {"AK1": SECRET},
            NOW + dt.timedelta(seconds=901),
            signing.Verdict.BAD_TIMESTAMP,
        ),
        (
            _headers(),
            {"AK1": SECRET},
            NOW - dt.timedelta(seconds=901),
            signing.Verdict.BAD_TIMESTAMP,
        ),
        (_headers(x_date="2025-03-10"), {"AK1": SECRET}, NOW, signing.Verdict.BAD_TIMESTAMP),
        (_headers(), {"AK1": "other"}, NOW, signing.Verdict.MISMATCH),
        (_headers(host="h:8080"), {"AK1": SECRET}, NOW, signing.Verdict.MISMATCH),
        (_headers(host="h:443"), {"AK1": SECRET}, NOW, signing.Verdict.OK),
    ],
)
def test_verify_verdicts(
    headers: dict[str, str], secrets: dict[str, str], now: dt.datetime, verdict: signing.Verdict
) -> None:
    """verify() tells missing, malformed, unknown-key, stale and forged requests apart."""
    result = signing.verify(
        method="POST",
        path="/",
        query=[],
        headers=headers,
        body=b"{}",
        secrets=secrets,
        now=now,
        service="cloudidentity",
    )
    assert result.verdict is verdict


@pytest.mark.parametrize(
    ("names", "verdict"),
    [
        (("host", "x-date"), signing.Verdict.OK),
        (("host", "x-content-sha256", "x-date"), signing.Verdict.OK),
        (("content-type", "x-content-sha256", "x-date"), signing.Verdict.MALFORMED),
        (("content-type", "host", "x-content-sha256"), signing.Verdict.MALFORMED),
    ],
)
def test_verify_accepts_any_list_with_host_and_x_date(
    names: tuple[str, ...], verdict: signing.Verdict
) -> None:
    """A server accepts any SignedHeaders list that includes host and x-date."""
    headers = {"content-type": "application/json", "host": "h"}
    added = signing.sign(
        method="POST",
        path="/",
        query=[("A", "1")],
        headers=headers,
        body=b"",
        access_key="AK1",
        secret_key=SECRET,
        region="r",
        service="cloudidentity",
        x_date="20250310T101042Z",
        signed_headers=names,
    )
    headers |= {name.lower(): value for name, value in added.items()}
    result = signing.verify(
        method="POST",
        path="/",
        query=[("A", "1")],
        headers=headers,
        body=b"",
        secrets={"AK1": SECRET},
        now=NOW,
    )
    assert result.verdict is verdict
