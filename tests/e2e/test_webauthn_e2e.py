"""WebAuthn over real HTTP against ``identity serve`` (SQLite or PostgreSQL), driven by a software authenticator
(soft-webauthn): enrollment through the MFA API, the second factor in the direct flow (Auth0's and Okta's shapes),
passkeys as the first factor (Auth0's native passkey API), and every refusal an attacker would try.

The tenant's policy is ``always`` for this module; the issuer is the server's 127.0.0.1 URL, so the RP id is
``localhost`` and the accepted origin ``http://localhost:<port>`` (the defaults for a loopback issuer).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import jwt
import pytest

from tests.e2e.conftest import query, run_identity, verify_access_token
from tests.e2e.webauthn_support import (
    API,
    CONNECTION,
    INVALID,
    MALFORMED,
    MFA_WEBAUTHN,
    NO_WEBAUTHN,
    OTHER_CLIENT,
    PROTOCOL_CLAIM,
    PUBLIC,
    TOO_MANY,
    WEBAUTHN,
    SoftKey,
    WebAuthnSetup,
    concurrently,
    email,
    error_of,
    okta_form,
    set_tenant,
    webauthn_server,
)


@pytest.fixture(scope="module")
def wa(e2e_env: dict[str, str], database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebAuthnSetup]:
    with webauthn_server(e2e_env, database_url, tmp_path_factory.mktemp("webauthn")) as setup:
        yield setup


@pytest.fixture(scope="module")
def ada_key(wa: WebAuthnSetup) -> SoftKey:
    """Ada's key, enrolled through the MFA API (checked in the first test)."""
    key = SoftKey()
    wa.enrolled_ada = wa.enroll("ada", key)  # type: ignore[attr-defined]
    return key


def audit_events(wa: WebAuthnSetup, user_id: str, event_type: str, *, wait: float = 15.0) -> list[dict[str, object]]:
    """``identity logs`` for the user and type, polled (the server stores audit events in the background)."""
    deadline = time.monotonic() + wait
    while True:
        out = run_identity(["logs", "--user", user_id, "--type", event_type], wa.env).stdout
        events = [json.loads(line) for line in out.splitlines() if line.strip()]
        if events or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def claims(wa: WebAuthnSetup, body: dict[str, str]) -> dict[str, object]:
    return verify_access_token(wa.server, body["access_token"], audience=API)


def authenticators(wa: WebAuthnSetup, token: str) -> list[dict[str, object]]:
    response = httpx.get(wa.server.base_url + "/mfa/authenticators", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    listed: list[dict[str, object]] = response.json()
    return listed


def test_enrollment_through_the_mfa_api(wa: WebAuthnSetup, ada_key: SoftKey) -> None:
    enrolled = wa.enrolled_ada  # type: ignore[attr-defined]
    options = enrolled["associate"]["publicKey"]
    assert options["rp"]["id"] == "localhost"
    assert options["authenticatorSelection"]["residentKey"] == "preferred"
    assert options["attestation"] == "none"
    assert options["excludeCredentials"] == []
    assert len(options["user"]["id"]) >= 40  # 32 random bytes, base64url: not the user id, not the email
    assert email("ada") not in options["user"]["id"]
    assert enrolled["associate"]["recovery_codes"]  # the first factor brings the recovery code, as for OTP
    token = claims(wa, enrolled["tokens"])
    assert token["amr"] == ["pwd", "mfa", "swk"]  # attestation none proves nothing about hardware
    assert token["sub"] == wa.user_ids["ada"]
    # Listed by the MFA API beside the recovery code; the public key is stored as sent, the handle is random.
    kinds = {a["authenticator_type"]: a for a in authenticators(wa, wa.mfa_token("ada"))}
    assert set(kinds) == {"recovery-code", "webauthn"}
    assert kinds["webauthn"]["active"] is True and kinds["webauthn"]["id"].startswith("webauthn|dev_")
    rows = query(wa.database_url, "SELECT credential_id, public_key, sign_count FROM webauthn_credential")
    assert any(bytes(row[0]) == ada_key.device.credential_id for row in rows)


def test_second_factor_with_auth0_and_okta_shapes(wa: WebAuthnSetup, ada_key: SoftKey) -> None:
    # Auth0's shape: /mfa/challenge, then authn_response as an object in a JSON body.
    token = wa.mfa_token("ada")
    options = wa.challenge(token)
    assert [c["id"] for c in options["allowCredentials"]] == [ada_key.credential_id]
    assert options["rpId"] == "localhost" and options["userVerification"] == "preferred"
    assertion = ada_key.get(options, wa.origin)
    done = wa.token_json(
        {"grant_type": MFA_WEBAUTHN, "client_id": PUBLIC, "mfa_token": token, "authn_response": assertion}
    )
    assert done.status_code == 200, done.text
    assert done.headers["cache-control"] == "no-store"
    assert claims(wa, done.json())["amr"] == ["pwd", "mfa", "swk"]
    # Okta's shape: /oauth/primary-authenticate with challenge_hint, then form fields; with userHandle ...
    token = wa.mfa_token("ada")
    answer = wa.post(
        "/oauth/primary-authenticate",
        data={"client_id": PUBLIC, "mfa_token": token, "challenge_hint": MFA_WEBAUTHN},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["challenge_type"] == MFA_WEBAUTHN
    done = wa.mfa_webauthn(token, okta_form(ada_key.get(answer.json()["publicKey"], wa.origin)))
    assert done.status_code == 200, done.text
    # Okta's SDKs send the webauthn hint with the mfa_token: the same second-factor ceremony.
    token = wa.mfa_token("ada")
    answer = wa.post(
        "/oauth/primary-authenticate", data={"client_id": PUBLIC, "mfa_token": token, "challenge_hint": WEBAUTHN}
    )
    assert answer.status_code == 200 and answer.json()["challenge_type"] == MFA_WEBAUTHN, answer.text
    assert wa.mfa_webauthn(token, okta_form(ada_key.get(answer.json()["publicKey"], wa.origin))).status_code == 200
    # ... and without it (no credential id either: the server tries each of the user's keys).
    token = wa.mfa_token("ada")
    form = okta_form(ada_key.get(wa.challenge(token), wa.origin), user_handle=False)
    assert wa.mfa_webauthn(token, form).status_code == 200


def test_discovery_lists_the_grants_and_the_endpoint(wa: WebAuthnSetup) -> None:
    document = httpx.get(wa.server.base_url + "/.well-known/openid-configuration", timeout=30).json()
    assert {MFA_WEBAUTHN, WEBAUTHN} <= set(document["grant_types_supported"])
    assert document["primary_authenticate_endpoint"] == wa.server.issuer + "oauth/primary-authenticate"


def test_refusals(wa: WebAuthnSetup) -> None:
    """Replay, wrong origin, wrong RP id, another mfa_token's challenge, a cloned key: each refused, nothing spent."""
    key = SoftKey()
    wa.enroll("ben", key)
    # A replayed assertion: on its own (burned) mfa_token, and on a fresh one.
    token = wa.mfa_token("ben")
    assertion = key.get(wa.challenge(token), wa.origin)
    assert wa.mfa_webauthn(token, assertion["response"]).status_code == 200
    assert error_of(wa.mfa_webauthn(token, assertion["response"])) == MALFORMED
    fresh = wa.mfa_token("ben")
    wa.challenge(fresh)
    replayed = wa.mfa_webauthn(fresh, assertion["response"])
    assert (replayed.status_code, error_of(replayed)) == (403, INVALID)
    # A wrong origin, a wrong RP id (the key signs for another site), another mfa_token's challenge.
    options = wa.challenge(fresh)
    assert error_of(wa.mfa_webauthn(fresh, key.get(options, "http://localhost.evil.test")["response"])) == INVALID
    assert error_of(wa.mfa_webauthn(fresh, key.get(options, wa.origin, rp_id="evil.test")["response"])) == INVALID
    other = wa.mfa_token("ben")
    foreign = key.get(wa.challenge(other), wa.origin)
    assert error_of(wa.mfa_webauthn(fresh, foreign["response"])) == INVALID
    # The refusals spent nothing: the other token's challenge is still good, on its own token, and so is fresh.
    assert wa.mfa_webauthn(other, foreign["response"]).status_code == 200
    # A cloned key: the clone's counter lags behind the original's, which was used since.
    clone = key.clone()
    assert wa.mfa_webauthn(fresh, key.get(wa.challenge(fresh), wa.origin)["response"]).status_code == 200
    token = wa.mfa_token("ben")
    cloned = wa.mfa_webauthn(token, clone.get(wa.challenge(token), wa.origin)["response"])
    assert (cloned.status_code, error_of(cloned)) == (403, INVALID)
    assert "possibly cloned" in wa.server.process.stderr() + wa.server.process.stdout()
    # ... and in the audit log, a warning for the user (Auth0's "w"), beside the enrollment and the verifications.
    warned = audit_events(wa, wa.user_ids["ben"], "w")
    assert warned and "cloned" in str(warned[-1]["description"])
    assert audit_events(wa, wa.user_ids["ben"], "gd_enrollment_complete")
    assert audit_events(wa, wa.user_ids["ben"], "gd_auth_succeed")
    assert audit_events(wa, wa.user_ids["ben"], "gd_auth_failed")
    # The client must be the one the mfa_token was issued to, and be allowed the grant.
    assertion = key.get(wa.challenge(token), wa.origin)
    refused = wa.mfa_webauthn(token, assertion["response"], client_id=OTHER_CLIENT)
    assert error_of(refused) == ("invalid_request", "mfa_token not issued to this client")
    refused = wa.token(NO_WEBAUTHN, grant_type=MFA_WEBAUTHN, mfa_token=token, **assertion["response"])
    assert refused.status_code == 403 and error_of(refused)[0] == "unauthorized_client"
    assert wa.mfa_webauthn(token, assertion["response"]).status_code == 200


def test_one_assertion_raced_by_twenty_grants(wa: WebAuthnSetup) -> None:
    key = SoftKey()
    wa.enroll("cleo", key)
    token = wa.mfa_token("cleo")
    form = {"client_id": PUBLIC, "grant_type": MFA_WEBAUTHN, "mfa_token": token}
    form.update(okta_form(key.get(wa.challenge(token), wa.origin)))
    responses = concurrently(wa.server.token_url, [form] * 20)
    statuses = Counter(r.status_code for r in responses)
    assert statuses[200] == 1, [r.text for r in responses]
    assert all(r.status_code < 500 for r in responses)
    assert {error_of(r) for r in responses if r.status_code != 200} <= {INVALID, MALFORMED, TOO_MANY}
    rows = query(wa.database_url, "SELECT count(*) FROM webauthn_challenge WHERE consumed_at IS NOT NULL")
    assert rows[0][0] >= 1


def test_user_verification_required(wa: WebAuthnSetup) -> None:
    key = SoftKey()  # presence only
    wa.enroll("eli", key)
    set_tenant(wa.database_url, webauthn_user_verification="required")
    try:
        token = wa.mfa_token("eli")
        options = wa.challenge(token)
        assert options["userVerification"] == "required"
        refused = wa.mfa_webauthn(token, key.get(options, wa.origin)["response"])
        assert error_of(refused) == INVALID
        key.user_verified = True  # the same key, now with a PIN
        assert wa.mfa_webauthn(token, key.get(wa.challenge(token), wa.origin)["response"]).status_code == 200
        # Registration too: a new passkey that does not verify the user is refused, one that does is taken.
        enroller = mfa_api_token(wa, "eli", key, "enroll")
        for verifies, expected in ((False, 403), (True, 200)):
            registration = wa.post(
                "/passkey/register", json={"client_id": PUBLIC}, headers={"Authorization": f"Bearer {enroller}"}
            ).json()
            created = SoftKey(user_verified=verifies).create(registration["authn_params_public_key"], wa.origin)
            session = registration["auth_session"]
            answer = wa.token_json(
                {"grant_type": WEBAUTHN, "client_id": PUBLIC, "auth_session": session, "authn_response": created}
            )
            assert answer.status_code == expected, answer.text
    finally:
        set_tenant(wa.database_url, webauthn_user_verification="preferred")


def mfa_api_token(wa: WebAuthnSetup, name: str, key: SoftKey, scope: str) -> str:
    """An MFA-API access token for ``name`` (audience .../mfa/, which always asks for a second factor)."""
    token = wa.mfa_token(name, audience=wa.server.issuer + "mfa/", scope=scope)
    done = wa.mfa_webauthn(token, key.get(wa.challenge(token), wa.origin)["response"])
    assert done.status_code == 200, done.text
    access: str = done.json()["access_token"]
    return access


def test_passkeys_as_the_first_factor(wa: WebAuthnSetup) -> None:
    security_key = SoftKey()
    wa.enroll("dora", security_key)
    # Registration only for a proven user: without a token, with an mfa_token, with a token lacking enroll.
    assert wa.post("/passkey/register", data={"client_id": PUBLIC}).status_code == 401
    bare = wa.post("/passkey/register", data={"client_id": PUBLIC},
                   headers={"Authorization": f"Bearer {wa.mfa_token('dora')}"})  # fmt: skip
    assert bare.status_code == 401
    reader = mfa_api_token(wa, "dora", security_key, "read:authenticators")
    refused = wa.post("/passkey/register", data={"client_id": PUBLIC}, headers={"Authorization": f"Bearer {reader}"})
    assert refused.status_code == 401 and error_of(refused)[0] == "invalid_token"
    enroller = mfa_api_token(wa, "dora", security_key, "enroll")
    registration = wa.post(
        "/passkey/register",
        json={"client_id": PUBLIC, "realm": CONNECTION, "user_profile": {"email": email("dora")}},
        headers={"Authorization": f"Bearer {enroller}"},
    )
    assert registration.status_code == 200, registration.text
    body = registration.json()
    excluded = [c["id"] for c in body["authn_params_public_key"]["excludeCredentials"]]
    assert excluded == [security_key.credential_id]  # the key already enrolled cannot be enrolled twice
    passkey = SoftKey(user_verified=True)
    created = passkey.create(body["authn_params_public_key"], wa.origin)
    created["authenticatorAttachment"] = "platform"
    registered = wa.token_json(
        {"grant_type": WEBAUTHN, "client_id": PUBLIC, "auth_session": body["auth_session"], "authn_response": created}
    )
    assert registered.status_code == 200, registered.text
    # Sign in with the passkey alone: discoverable (no allowCredentials), the user found by userHandle.
    challenge = wa.post("/passkey/challenge", json={"client_id": PUBLIC, "realm": CONNECTION})
    assert challenge.status_code == 200, challenge.text
    options = challenge.json()["authn_params_public_key"]
    assert options["allowCredentials"] == []
    session = challenge.json()["auth_session"]
    assertion = passkey.get(options, wa.origin)
    request = {
        "grant_type": WEBAUTHN,
        "client_id": PUBLIC,
        "auth_session": session,
        "authn_response": assertion,
        "realm": CONNECTION,
        "audience": API,
        "scope": "openid read:things",
    }
    signed_in = wa.token_json(request)
    assert signed_in.status_code == 200, signed_in.text
    token = claims(wa, signed_in.json())
    assert token["sub"] == wa.user_ids["dora"]
    assert token["amr"] == ["swk", "mfa"]  # the passkey verified the user: two factors in one
    assert token[PROTOCOL_CLAIM] == "oauth2-webauthn"  # rules ran, and saw the protocol
    assert audit_events(wa, wa.user_ids["dora"], "s")  # a passkey login is a login (Auth0's "s")
    id_token = jwt.decode(signed_in.json()["id_token"], options={"verify_signature": False})
    assert id_token["sub"] == wa.user_ids["dora"]
    # The auth_session is single use.
    again = wa.token_json(request)
    assert (again.status_code, error_of(again)) == (403, ("invalid_grant", "Invalid or expired auth_session."))
    # A passkey that only proves presence is one factor: the policy (always) asks for a second one, which cannot
    # be the same key again; another of the user's keys (or OTP) completes it.
    session_of = wa.post("/passkey/challenge", data={"client_id": PUBLIC}).json()
    presence_only = security_key.get(session_of["authn_params_public_key"], wa.origin)
    first = wa.token_json({"grant_type": WEBAUTHN, "client_id": PUBLIC, "auth_session": session_of["auth_session"],
                           "authn_response": presence_only, "audience": API})  # fmt: skip
    assert (first.status_code, first.json()["error"]) == (403, "mfa_required"), first.text
    mfa_token = first.json()["mfa_token"]
    same = wa.mfa_webauthn(mfa_token, security_key.get(wa.challenge(mfa_token), wa.origin)["response"])
    assert error_of(same) == INVALID
    second = wa.mfa_webauthn(mfa_token, passkey.get(wa.challenge(mfa_token), wa.origin)["response"])
    assert second.status_code == 200, second.text
    assert claims(wa, second.json())["amr"] == ["swk", "mfa", "swk"]
    # A session of one client is not another's; the grant needs the client to be allowed it.
    session_of = wa.post("/passkey/challenge", data={"client_id": PUBLIC}).json()
    assertion = passkey.get(session_of["authn_params_public_key"], wa.origin)
    stolen = wa.token_json({"grant_type": WEBAUTHN, "client_id": OTHER_CLIENT,
                            "auth_session": session_of["auth_session"], "authn_response": assertion})  # fmt: skip
    assert error_of(stolen) == ("invalid_grant", "Invalid or expired auth_session.")
    assert wa.post("/passkey/challenge", data={"client_id": NO_WEBAUTHN}).status_code == 403
    wa.dora = (security_key, passkey)  # type: ignore[attr-defined]


def test_listed_removed_and_reset(wa: WebAuthnSetup) -> None:
    """DELETE /mfa/authenticators/{id} removes a key; ``identity users mfa-reset`` removes them all."""
    security_key, passkey = wa.dora  # type: ignore[attr-defined]
    keys = [a for a in authenticators(wa, wa.mfa_token("dora")) if a["authenticator_type"] == "webauthn"]
    assert sorted(str(k["name"]) for k in keys) == ["Passkey", "Security key"]
    remover = mfa_api_token(wa, "dora", passkey, "remove:authenticators")
    first = next(k for k in keys if k["name"] == "Security key")
    removed = httpx.delete(
        f"{wa.server.base_url}/mfa/authenticators/{first['id']}", headers={"Authorization": f"Bearer {remover}"}
    )
    assert removed.status_code == 204, removed.text
    left = [a for a in authenticators(wa, wa.mfa_token("dora")) if a["authenticator_type"] == "webauthn"]
    assert [k["name"] for k in left] == ["Passkey"]
    token = wa.mfa_token("dora")
    refused = wa.mfa_webauthn(token, security_key.get(wa.challenge(token), wa.origin)["response"])
    assert error_of(refused) == INVALID
    # One passkey assertion raced by 20 grants: exactly one signs in (the
    # losers' failures empty Dora's attempt bucket, so this comes last).
    session_of = wa.post("/passkey/challenge", data={"client_id": PUBLIC}).json()
    raced = passkey.get(session_of["authn_params_public_key"], wa.origin)
    form = {"client_id": PUBLIC, "grant_type": WEBAUTHN, "auth_session": session_of["auth_session"],
            "authn_response": json.dumps(raced)}  # fmt: skip
    responses = concurrently(wa.server.token_url, [form] * 20)
    assert Counter(r.status_code for r in responses)[200] == 1, [r.text for r in responses]
    assert all(r.status_code < 500 for r in responses)
    assert {error_of(r) for r in responses if r.status_code != 200} <= {
        INVALID, ("invalid_grant", "Invalid or expired auth_session."), TOO_MANY,
    }  # fmt: skip
    # An operator's reset (lost device) removes every key: the passkey no longer signs in.
    run_identity(["users", "mfa-reset", wa.user_ids["dora"]], wa.env)
    assert authenticators(wa, wa.mfa_token("dora")) == []
    session_of = wa.post("/passkey/challenge", data={"client_id": PUBLIC}).json()
    assertion = passkey.get(session_of["authn_params_public_key"], wa.origin)
    gone = wa.token_json({"grant_type": WEBAUTHN, "client_id": PUBLIC, "auth_session": session_of["auth_session"],
                          "authn_response": assertion})  # fmt: skip
    assert error_of(gone) == INVALID
