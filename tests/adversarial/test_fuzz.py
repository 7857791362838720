"""Fuzzing the API from its own OpenAPI document (``/schema``), with schemathesis, against the real server.

The document the server publishes is taken as is, then seeded with values an attacker would have or guess: the real
client ids and secrets, real users and passwords, live mfa_tokens, refresh tokens, recovery codes and access tokens
(as Bearer headers too), mixed with everything hypothesis generates. Schemathesis generates both valid requests
(positive) and requests that break the schema (negative). The properties, for every request:

- never a 5xx, except a 503 with ``Retry-After`` (load shedding);
- an error is the contract's JSON (``application/json`` with ``error``), never a page or plain text;
- the response conforms to the document (status code declared, body matching its schema);
- and, at the end, the server log holds no traceback.

``IDENTITY_FUZZ_CASES`` sets the number of requests (2,000 by default; the long run in docs/security.md uses 20,000).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.adversarial.conftest import (
    API,
    BASIC_SECRET,
    CLIENT_SECRETS,
    EMPLOYEE,
    FUZZ_ROUNDS_DEFAULT,
    MFA_OTP,
    NO_MFA,
    PASSWORD,
    PUBLIC,
    REPORTS_API,
    Target,
    email,
    env_int,
)

# Where each operation's share of the cases goes (the token endpoint has five grants behind it).
WEIGHTS = {
    ("POST", "/oauth/token"): 8,
    ("POST", "/oauth/authorize-challenge"): 4,
    ("POST", "/oauth/revoke"): 2,
    ("GET", "/userinfo"): 1,
    ("POST", "/userinfo"): 1,
    ("GET", "/mfa/authenticators"): 2,
    ("POST", "/mfa/associate"): 2,
    ("POST", "/mfa/challenge"): 2,
    ("DELETE", "/mfa/authenticators/{authenticator_id}"): 2,
}
OTHER_WEIGHT = 8
"""The other operations together (the Management API: read scopes only, the fuzz must not delete the suite's users)."""
FUZZED_PREFIXES = ("/oauth/", "/mfa/", "/userinfo", "/passkey/", "/api/v2/")
BODY_STATUSES_WITHOUT_JSON = {204}


@dataclass
class Seeds:
    """Values worth trying, next to whatever hypothesis makes up."""

    values: dict[str, list[str]] = field(default_factory=dict)
    bearers: list[str] = field(default_factory=list)


def seeds(target: Target) -> Seeds:
    enrolled = target.enroll("fuzz")
    mfa_tokens = [target.mfa_token("fuzz") for _ in range(6)]
    refresh = target.login("alice", scope="openid offline_access read:things").json()
    userinfo = target.login("alice", scope="openid profile email", audience=None).json()
    target.forget_used_steps("fuzz")
    mfa_api = target.token(
        grant_type=MFA_OTP,
        mfa_token=target.mfa_token("fuzz", audience=target.issuer + "mfa/"),
        otp=enrolled.code(),
    ).json()
    target.forget_used_steps("fuzz")
    first_party = first_party_seeds(target)
    return Seeds(
        values={
            "client_id": [*CLIENT_SECRETS, "unknown-client"],
            "client_secret": [secret for secret in CLIENT_SECRETS.values() if secret] + [BASIC_SECRET + "x"],
            "username": [email("alice"), email("fuzz"), "blocked@adv.test", EMPLOYEE, "nobody@adv.test"],
            "password": [PASSWORD, PASSWORD + "x", ""],
            "realm": ["customers", "employees", "nope"],
            "audience": [API, REPORTS_API, target.issuer + "mfa/", "https://unknown.test/"],
            "scope": ["openid", "openid profile email offline_access", "read:things", "offline_access", "x y z"],
            "mfa_token": mfa_tokens,
            "otp": [enrolled.code(), "000000"],
            "recovery_code": [enrolled.recovery_code, enrolled.recovery_code.lower()],
            "refresh_token": [refresh["refresh_token"]],
            "token": [refresh["refresh_token"], mfa_tokens[0], "unknown"],
            "challenge_type": ["otp", "oob", "otp oob"],
            "authenticator_id": ["totp|dev_x", "recovery-code|dev_x"],
            "id": [enrolled.user_id, "auth0|nobody", "adv-public", "con_x"],
            "user_id": [enrolled.user_id, "auth0|nobody"],
            **first_party,
        },
        bearers=[
            *mfa_tokens,
            userinfo["access_token"],
            mfa_api["access_token"],
            refresh["access_token"],
            refresh.get("id_token", "x.y.z"),
            target.management_token(),
            "x.y.z",
        ],
    )


def first_party_seeds(target: Target) -> dict[str, list[str]]:
    """Live values of the first-party apps endpoint: an auth_session awaiting fuzz's second factor, a code."""
    verifier = "v" * 43
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    start = {"client_id": PUBLIC, "response_type": "code", "code_challenge": challenge, "code_challenge_method": "S256",
             "password": PASSWORD, "audience": API}  # fmt: skip
    url = f"{target.base_url}/oauth/authorize-challenge"
    pending = httpx.post(url, data={**start, "username": email("fuzz")}, timeout=30).json()
    issued = httpx.post(url, data={**start, "username": email("alice")}, timeout=30).json()
    return {
        "response_type": ["code", "token"],
        "code_challenge": [challenge, "x" * 43],
        "code_challenge_method": ["S256", "plain"],
        "acr_values": ["http://schemas.openid.net/pape/policies/2007/06/multi-factor", "urn:other"],
        "auth_session": [pending["auth_session"], issued["auth_session"], "unknown"],
        "code": [issued["authorization_code"], "unknown"],
        "code_verifier": [verifier, "w" * 43],
    }


def seeded(schema: dict[str, Any], found: Seeds, *, only_seeds: bool) -> dict[str, Any]:
    """The document with a Bearer header parameter where a bearer is needed, and the seeds offered for members.

    ``only_seeds``: every seeded member takes a seed (and ``client_id`` is required), so that valid requests get
    past client authentication to the grants; otherwise the seeds are offered beside the member's own schema.
    """
    document = copy.deepcopy(schema)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method.upper() not in {"GET", "POST", "DELETE", "PUT", "PATCH"}:
                continue
            for content in operation.get("requestBody", {}).get("content", {}).values():
                body = content.get("schema", {})
                properties = body.get("properties", {})
                for name, member in list(properties.items()):
                    if name in found.values:
                        seeds_only = {"enum": found.values[name]}
                        properties[name] = seeds_only if only_seeds else {"anyOf": [seeds_only, member]}
                if only_seeds and "properties" in body and "$ref" not in body:
                    # Public clients only (the open half tries the secrets), no unknown members, and the members a
                    # grant or the MFA API needs always present; the optional ones vary.
                    body["additionalProperties"] = False
                    properties.pop("client_secret", None)
                    if "client_id" in properties:
                        properties["client_id"] = {"enum": [PUBLIC, NO_MFA]}
                    wanted = {"client_id", "username", "password", "mfa_token", "otp", "refresh_token", "token"}
                    wanted |= {"recovery_code", "authenticator_types"}
                    body["required"] = sorted({*body.get("required", []), *(wanted & set(properties))})
            for parameter in operation.get("parameters", []):
                if parameter.get("name") in found.values and parameter.get("in") == "path":
                    seeds_only = {"enum": found.values[parameter["name"]]}
                    parameter["schema"] = seeds_only if only_seeds else {"anyOf": [seeds_only, parameter["schema"]]}
            needs_bearer = operation.get("security") or path.startswith("/api/v2/")
            if needs_bearer and path not in ("/oauth/token", "/oauth/revoke"):
                bearers = {"enum": [f"Bearer {token}" for token in found.bearers]}
                operation.setdefault("parameters", []).append(
                    {
                        "name": "Authorization",
                        "in": "header",
                        "required": only_seeds,
                        "schema": bearers if only_seeds else {"anyOf": [bearers, {"type": "string"}]},
                    }
                )
                operation.pop("security", None)
    return document


@dataclass
class Tally:
    cases: int = 0
    http_seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def header(response: Any, name: str) -> str:
    """A response header of schemathesis's Response (values are lists) or of requests'."""
    for key, value in response.headers.items():
        if key.lower() == name:
            return str(value[0] if isinstance(value, list) else value)
    return ""


def error_code(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return "-"
    return str(body.get("error", "")) if isinstance(body, dict) else ""


def check_properties(tally: Tally, label: str, response: Any) -> None:
    status = response.status_code
    tally.statuses[status] += 1
    problems = []
    if status >= 500 and not (status == 503 and header(response, "retry-after")):
        problems.append(f"{status}")
    content_type = header(response, "content-type")
    if status >= 400 or (status == 200 and response.content):
        if not content_type.startswith("application/json"):
            problems.append(f"{status} with Content-Type {content_type!r}")
        else:
            try:
                body = response.json()
            except ValueError:
                problems.append(f"{status} with a body that is not JSON")
            else:
                if status >= 400 and not (isinstance(body, dict) and isinstance(body.get("error"), str)):
                    problems.append(f"{status} without an error member: {body!r:.200}")
    if problems:
        tally.failures.append(f"{label}: {', '.join(problems)}: {response.text[:300]!r}")


def fuzz_operation(
    operation: Any,
    target: Target,
    session: requests.Session,
    tally: Tally,
    total: int,
    weight: float,
    *,
    only_seeds: bool,
) -> None:
    """Send this operation's share of the cases: valid ones from the seeded document, both kinds from the other."""
    label = f"{operation.method.upper()} {operation.path}"
    share = max(3, round(total * weight))
    positive = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
    strategy = (
        positive if only_seeds else st.one_of(positive, operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    )

    @settings(
        max_examples=share,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        sent = time.monotonic()
        response = case.call(base_url=target.base_url, session=session, timeout=30)
        tally.http_seconds += time.monotonic() - sent
        tally.cases += 1
        tally.by_operation[label] += 1
        check_properties(tally, label, response)
        tally.answers[f"{label} {response.status_code} {error_code(response)}"] += 1
        try:
            case.validate_response(
                response,
                checks=[status_code_conformance, content_type_conformance, response_schema_conformance],
            )
        except (AssertionError, FailureGroup) as failure:
            tally.failures.append(f"{label}: does not conform to /schema: {str(failure)[:400]}")

    run()


def test_fuzz_the_published_api(target: Target) -> None:
    total = env_int("IDENTITY_FUZZ_CASES", FUZZ_ROUNDS_DEFAULT)
    published = httpx.get(f"{target.base_url}/schema/openapi.json", timeout=30).json()
    found = seeds(target)
    session = requests.Session()
    tally = Tally()
    started = time.monotonic()
    # Half the cases from the seeded document (valid requests, deep paths), half from the open one.
    for only_seeds in (True, False):
        schema = schemathesis.openapi.from_dict(seeded(published, found, only_seeds=only_seeds))
        operations = [result.ok() for result in schema.get_all_operations()]
        fuzzed = [op for op in operations if op.path.startswith(FUZZED_PREFIXES)]
        assert {(op.method.upper(), op.path) for op in fuzzed} >= set(WEIGHTS), "an operation vanished from /schema"
        others = sum(1 for op in fuzzed if (op.method.upper(), op.path) not in WEIGHTS)
        weight_sum = sum(WEIGHTS.values()) + (OTHER_WEIGHT if others else 0)
        for operation in fuzzed:
            key = (operation.method.upper(), operation.path)
            weight = (WEIGHTS[key] if key in WEIGHTS else OTHER_WEIGHT / others) / weight_sum
            # 15% headroom: hypothesis stops early on operations whose inputs it has exhausted.
            fuzz_operation(operation, target, session, tally, total * 115 // 200, weight, only_seeds=only_seeds)

    elapsed = time.monotonic() - started
    report = {
        "cases": tally.cases,
        "seconds": round(elapsed, 1),
        "http_seconds": round(tally.http_seconds, 1),
        "statuses": dict(sorted(tally.statuses.items())),
        "by_operation": dict(tally.by_operation),
        "failures": len(tally.failures),
        "answers": dict(tally.answers.most_common()),
    }
    print("fuzz:", json.dumps(report))
    assert tally.cases >= total, report
    assert tally.failures == [], "\n".join(tally.failures[:20])
    target.assert_clean_log()
