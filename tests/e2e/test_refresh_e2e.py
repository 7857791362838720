"""Refresh tokens end to end (issue 6): Auth0's Python SDK and Authlib against ONE real ``identity serve``.

Rotation, replay of a retired token (the whole family dies), leeway, scope narrowing, absolute and idle expiry in real
time, a blocked user, ``POST /oauth/revoke``, ``/userinfo`` (GET and POST), a rule that sees
``oauth2-refresh-token`` on refresh, and the ``identity users sessions`` / ``revoke-sessions`` commands on the
server's database. The tenant is this module's own (`tests.e2e.refresh_support`), added to the shared e2e database.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import jwt
import pytest
from auth0.authentication import GetToken, RevokeToken, Users
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from tests.e2e.conftest import PASSWORD_REALM, identity_command, run_identity, verify_access_token, verify_id_token
from tests.e2e.refresh_support import (
    ABSOLUTE,
    ABSOLUTE_LIFETIME,
    BASIC,
    CAROL,
    CLIENTS,
    CONFIDENTIAL,
    CONNECTION,
    ERIN,
    FIXED,
    FRANK,
    GRACE,
    IDLE,
    IDLE_LIFETIME,
    LEEWAY,
    LEEWAY_SHORT,
    LEEWAY_SHORT_SECONDS,
    PROTOCOL_CLAIM,
    PUBLIC,
    RT_API,
    RT_API_LIFETIME,
    UNKNOWN,
    USERS,
    RefreshTenant,
    apply,
    check_family_shape,
    family_rows,
    login,
    refresh,
    refresh_server,
    tenant_toml,
    token_hash,
)

try:  # auth0-python 4.x
    from auth0.exceptions import Auth0Error  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # auth0-python 5.x and later
    from auth0.authentication.exceptions import Auth0Error  # type: ignore[import-not-found,no-redef,unused-ignore]

FULL_SCOPE = "openid profile email offline_access read:notes write:notes"


@pytest.fixture(scope="module")
def rt(database_url: str, e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RefreshTenant]:
    """ONE server on the refresh tenant, with a file rule that writes the protocol it sees into both tokens."""
    workdir = tmp_path_factory.mktemp("refresh-e2e")
    with refresh_server("refresh-e2e", e2e_env, database_url, workdir, with_rule=True) as tenant:
        yield tenant


# --- Clients ----------------------------------------------------------------------------------------------------


def sdk(rt: RefreshTenant, client_id: str = PUBLIC) -> GetToken:
    """Auth0's ``GetToken`` (JSON bodies, the secret in the body)."""
    _, secret, _ = CLIENTS[client_id]
    return GetToken(rt.server.domain, client_id, client_secret=secret, protocol="http")


def sdk_login(rt: RefreshTenant, email: str, client_id: str = PUBLIC, scope: str = FULL_SCOPE) -> dict[str, Any]:
    body: dict[str, Any] = sdk(rt, client_id).login(
        email, USERS[email][0], scope=scope, realm=CONNECTION, audience=RT_API
    )
    return body


def sdk_error(call: Callable[[], Any]) -> Auth0Error:
    with pytest.raises(Auth0Error) as caught:
        call()
    return caught.value


def assert_unknown(error: Auth0Error) -> None:
    assert (error.status_code, error.error_code, error.message) == (403, UNKNOWN["error"], UNKNOWN["error_description"])


@contextmanager
def authlib_session(client_id: str, **kwargs: Any) -> Iterator[OAuth2Session]:
    """Authlib's requests ``OAuth2Session`` (form bodies; Basic auth for the client_secret_basic client)."""
    method, secret, _ = CLIENTS[client_id]
    with OAuth2Session(
        client_id, secret, token_endpoint_auth_method=method, revocation_endpoint_auth_method=method, **kwargs
    ) as session:
        yield session


def authlib_login(session: OAuth2Session, rt: RefreshTenant, email: str, scope: str = FULL_SCOPE) -> dict[str, Any]:
    token: dict[str, Any] = session.fetch_token(
        rt.server.token_url,
        username=email,
        password=USERS[email][0],
        grant_type=PASSWORD_REALM,
        realm=CONNECTION,
        audience=RT_API,
        scope=scope,
    )
    return token


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.json() == UNKNOWN


def unverified(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


# --- Rotation and reuse -----------------------------------------------------------------------------------------


def test_sdk_rotates_on_every_use_and_a_replayed_token_burns_the_whole_family(rt: RefreshTenant) -> None:
    get_token = sdk(rt)
    first = sdk_login(rt, CAROL)
    assert set(first["scope"].split()) == set(FULL_SCOPE.split())
    tokens = [first["refresh_token"]]
    for _ in range(4):
        body = get_token.refresh_token(tokens[-1])  # the SDK sends scope="": the original scopes are kept
        assert body["refresh_token"].startswith("v1.")
        assert body["refresh_token"] not in tokens
        assert body["scope"] == first["scope"]
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == RT_API_LIFETIME
        claims = verify_access_token(rt.server, body["access_token"], audience=RT_API)
        assert claims["gty"] == "refresh_token"
        assert claims["sub"] == rt.user_ids[CAROL]
        assert claims["azp"] == PUBLIC
        assert claims["aud"] == [RT_API, rt.server.issuer + "userinfo"]
        assert claims["scope"] == first["scope"]
        id_claims = verify_id_token(rt.server, body["id_token"], client_id=PUBLIC)
        assert (id_claims["sub"], id_claims["email"], id_claims["name"]) == (rt.user_ids[CAROL], CAROL, "Carol")
        tokens.append(body["refresh_token"])

    rows = family_rows(rt.database_url, tokens[0])
    assert [row["token_hash"] for row in rows] == [token_hash(token) for token in tokens]  # only hashes are stored
    check_family_shape(rows)
    assert [row["used_at"] is not None for row in rows] == [True] * 4 + [False]
    assert all(row["revoked_at"] is None for row in rows)

    # A retired token comes back (a stolen copy): refused, and the family dies, its newest token included.
    assert_unknown(sdk_error(lambda: get_token.refresh_token(tokens[1])))
    for token in reversed(tokens):
        assert_unknown(sdk_error(lambda token=token: get_token.refresh_token(token)))
    rows = family_rows(rt.database_url, tokens[0])
    assert {row["revoked_reason"] for row in rows} == {"reuse"}
    assert all(row["successor"] is None for row in rows)  # no sealed successor outlives the family
    # Carol signs in again: a new family, unaffected.
    assert get_token.refresh_token(sdk_login(rt, CAROL)["refresh_token"])["refresh_token"]


@pytest.mark.parametrize("client_id", [BASIC, CONFIDENTIAL, PUBLIC])
def test_authlib_rotates_and_a_replay_burns_the_family(rt: RefreshTenant, client_id: str) -> None:
    with authlib_session(client_id) as session:
        token = authlib_login(session, rt, CAROL)
        tokens = [token["refresh_token"]]
        for _ in range(3):
            token = session.refresh_token(rt.server.token_url, refresh_token=tokens[-1])
            assert token["refresh_token"] not in tokens
            assert set(token["scope"].split()) == set(FULL_SCOPE.split())
            assert abs(token["expires_at"] - (time.time() + RT_API_LIFETIME)) < 60
            claims = verify_access_token(rt.server, token["access_token"], audience=RT_API)
            assert (claims["gty"], claims["azp"]) == ("refresh_token", client_id)
            verify_id_token(rt.server, token["id_token"], client_id=client_id)
            tokens.append(token["refresh_token"])
        for replayed in (tokens[0], tokens[-1]):
            with pytest.raises(OAuthError) as caught:
                session.refresh_token(rt.server.token_url, refresh_token=replayed)
            assert (caught.value.error, caught.value.description) == (UNKNOWN["error"], UNKNOWN["error_description"])
    check_family_shape(family_rows(rt.database_url, tokens[0]))


def test_another_clients_token_is_unknown_and_stays_usable(rt: RefreshTenant) -> None:
    token = login(rt.server, CAROL, client_id=PUBLIC)["refresh_token"]
    assert_refused(refresh(rt.server, token, client_id=CONFIDENTIAL))
    assert refresh(rt.server, token, client_id=PUBLIC).status_code == 200


def test_non_rotating_client_reuses_its_token(rt: RefreshTenant) -> None:
    token = login(rt.server, CAROL, client_id=FIXED)["refresh_token"]
    for _ in range(3):
        response = refresh(rt.server, token, client_id=FIXED)
        assert response.status_code == 200, response.text
        assert "refresh_token" not in response.json()
        assert verify_access_token(rt.server, response.json()["access_token"], audience=RT_API)["azp"] == FIXED
    rows = family_rows(rt.database_url, token)
    assert len(rows) == 1 and rows[0]["used_at"] is None and rows[0]["revoked_at"] is None


# --- Leeway -----------------------------------------------------------------------------------------------------


def test_leeway_hands_the_immediately_previous_token_the_same_successor(rt: RefreshTenant) -> None:
    get_token = sdk(rt, LEEWAY)
    t0 = sdk_login(rt, CAROL, LEEWAY)["refresh_token"]
    t1 = get_token.refresh_token(t0)["refresh_token"]
    # The response was "lost": the client presents t0 again within the leeway and gets the same t1.
    again = get_token.refresh_token(t0)
    assert again["refresh_token"] == t1
    assert verify_access_token(rt.server, again["access_token"], audience=RT_API)["gty"] == "refresh_token"
    assert get_token.refresh_token(t0)["refresh_token"] == t1  # as often as it likes, within the leeway
    assert len(family_rows(rt.database_url, t0)) == 2  # no new token was minted for the retries
    t2 = get_token.refresh_token(t1)["refresh_token"]
    assert t2 not in (t0, t1)
    # t0 is now second-to-last: a breach even within the leeway, and the whole family dies.
    assert_unknown(sdk_error(lambda: get_token.refresh_token(t0)))
    assert_unknown(sdk_error(lambda: get_token.refresh_token(t2)))
    rows = family_rows(rt.database_url, t0)
    check_family_shape(rows)
    assert {row["revoked_reason"] for row in rows} == {"reuse"}


def test_leeway_ends(rt: RefreshTenant) -> None:
    with authlib_session(LEEWAY_SHORT) as session:
        t0 = authlib_login(session, rt, CAROL)["refresh_token"]
        t1 = session.refresh_token(rt.server.token_url, refresh_token=t0)["refresh_token"]
        retired_at = time.monotonic()
        assert session.refresh_token(rt.server.token_url, refresh_token=t0)["refresh_token"] == t1
        time.sleep(max(0.0, retired_at + LEEWAY_SHORT_SECONDS + 1.0 - time.monotonic()))
        with pytest.raises(OAuthError) as caught:
            session.refresh_token(rt.server.token_url, refresh_token=t0)
        assert caught.value.error == "invalid_grant"
    assert_refused(refresh(rt.server, t1, client_id=LEEWAY_SHORT))


# --- Scope ------------------------------------------------------------------------------------------------------


def test_scope_narrows_for_one_exchange_and_never_widens(rt: RefreshTenant) -> None:
    get_token = sdk(rt)
    first = sdk_login(rt, CAROL, scope="openid email offline_access read:notes")
    narrowed = get_token.refresh_token(first["refresh_token"], scope="read:notes")
    # offline_access stays (a refresh token comes back) although the request did not repeat it.
    assert set(narrowed["scope"].split()) == {"offline_access", "read:notes"}
    assert "id_token" not in narrowed  # openid was left out
    claims = verify_access_token(rt.server, narrowed["access_token"], audience=RT_API)
    assert claims["scope"] == narrowed["scope"]
    assert claims["aud"] == RT_API  # no openid, no userinfo audience

    # Asking for more than the original grant: 400 invalid_scope, and the token is not spent.
    wider = sdk_error(lambda: get_token.refresh_token(narrowed["refresh_token"], scope="read:notes write:notes"))
    assert (wider.status_code, wider.error_code) == (400, "invalid_scope")
    # Without scope (the SDK's ""), the successor carries the original grant again.
    full = get_token.refresh_token(narrowed["refresh_token"])
    assert full["scope"] == first["scope"]
    assert verify_id_token(rt.server, full["id_token"], client_id=PUBLIC)["email"] == CAROL

    with authlib_session(CONFIDENTIAL, scope="openid read:notes") as session:  # the session's scope is sent
        token = session.refresh_token(
            rt.server.token_url, refresh_token=login(rt.server, CAROL, client_id=CONFIDENTIAL)["refresh_token"]
        )
        assert set(token["scope"].split()) == {"openid", "offline_access", "read:notes"}
        assert verify_id_token(rt.server, token["id_token"], client_id=CONFIDENTIAL)["sub"] == rt.user_ids[CAROL]
        assert "email" not in verify_id_token(rt.server, token["id_token"], client_id=CONFIDENTIAL)


# --- Expiry (real time) -----------------------------------------------------------------------------------------


def test_absolute_lifetime_is_not_extended_by_rotation(rt: RefreshTenant) -> None:
    sent = time.monotonic()
    token = login(rt.server, CAROL, client_id=ABSOLUTE)["refresh_token"]
    issued = time.monotonic()  # the family started between `sent` and `issued`
    for step in (1.5, 3.0):  # well within the lifetime, and each time within the (equal) idle lifetime
        time.sleep(max(0.0, sent + step - time.monotonic()))
        response = refresh(rt.server, token, client_id=ABSOLUTE)
        assert response.status_code == 200, f"refused {time.monotonic() - sent:.1f}s after login: {response.text}"
        token = response.json()["refresh_token"]
    last = time.monotonic()
    time.sleep(max(0.0, issued + ABSOLUTE_LIFETIME + 0.7 - time.monotonic()))
    assert time.monotonic() - last < ABSOLUTE_LIFETIME  # so only the absolute lifetime can have run out
    assert_refused(refresh(rt.server, token, client_id=ABSOLUTE))


def test_idle_lifetime_is_renewed_by_each_exchange_then_runs_out(rt: RefreshTenant) -> None:
    sent = time.monotonic()
    token = login(rt.server, CAROL, client_id=IDLE)["refresh_token"]
    for _ in range(3):  # 4.5 s in all, longer than the idle lifetime: each exchange renewed it
        time.sleep(1.5)
        response = refresh(rt.server, token, client_id=IDLE)
        assert response.status_code == 200, f"refused {time.monotonic() - sent:.1f}s after login: {response.text}"
        token = response.json()["refresh_token"]
    assert time.monotonic() - sent > IDLE_LIFETIME
    time.sleep(IDLE_LIFETIME + 0.7)
    assert_refused(refresh(rt.server, token, client_id=IDLE))


# --- Blocked user -----------------------------------------------------------------------------------------------


def test_a_blocked_user_gets_invalid_grant_and_unblocking_restores_the_session(rt: RefreshTenant) -> None:
    first = login(rt.server, ERIN)
    token = first["refresh_token"]
    response = refresh(rt.server, token)
    assert response.status_code == 200
    token, access_token = response.json()["refresh_token"], response.json()["access_token"]

    path = rt.workdir / "tenant-erin.toml"
    apply(rt.env, path, tenant_toml(users={ERIN: {"blocked": True}}))  # the operator blocks Erin
    try:
        blocked = refresh(rt.server, token)
        assert blocked.status_code == 403, blocked.text
        assert blocked.json()["error"] == "invalid_grant"
        error = sdk_error(lambda: sdk(rt).refresh_token(token))
        assert (error.status_code, error.error_code) == (403, "invalid_grant")
        info = httpx.get(rt.server.base_url + "/userinfo", headers={"Authorization": f"Bearer {access_token}"})
        assert info.status_code == 401 and info.json()["error"] == "invalid_token"
        assert info.headers["www-authenticate"].startswith("Bearer ")
    finally:
        apply(rt.env, path, tenant_toml(users={ERIN: {"blocked": False}}))
    # The refused exchanges spent nothing: once unblocked, the same token rotates again.
    response = refresh(rt.server, token)
    assert response.status_code == 200, response.text
    assert refresh(rt.server, response.json()["refresh_token"]).status_code == 200


# --- Revocation -------------------------------------------------------------------------------------------------


def test_revoke_through_the_sdk_kills_the_family_and_only_it(rt: RefreshTenant) -> None:
    get_token = sdk(rt)
    t0 = sdk_login(rt, CAROL)["refresh_token"]
    t1 = get_token.refresh_token(t0)["refresh_token"]
    other = sdk_login(rt, CAROL)["refresh_token"]  # a second install of the same app

    RevokeToken(rt.server.domain, PUBLIC, protocol="http").revoke_refresh_token(t1)
    assert_unknown(sdk_error(lambda: get_token.refresh_token(t1)))
    assert_unknown(sdk_error(lambda: get_token.refresh_token(t0)))
    assert {row["revoked_reason"] for row in family_rows(rt.database_url, t0)} == {"revoked"}
    assert get_token.refresh_token(other)["refresh_token"]

    # Unknown tokens get the same empty 200; revoking another family leaves this one alone.
    t2 = get_token.refresh_token(sdk_login(rt, CAROL)["refresh_token"])["refresh_token"]
    response = httpx.post(rt.server.base_url + "/oauth/revoke", json={"client_id": PUBLIC, "token": "v1.unknown"})
    assert response.status_code == 200 and response.content == b""  # RFC 7009 §2.2: unknown tokens too
    RevokeToken(rt.server.domain, PUBLIC, protocol="http").revoke_refresh_token(sdk_login(rt, CAROL)["refresh_token"])
    assert get_token.refresh_token(t2)["refresh_token"]  # a revocation of another family left t2 alone


@pytest.mark.parametrize("client_id", [BASIC, CONFIDENTIAL, PUBLIC])
def test_revoke_through_authlib(rt: RefreshTenant, client_id: str) -> None:
    revoke_url = rt.server.base_url + "/oauth/revoke"
    with authlib_session(client_id) as session:
        t0 = authlib_login(session, rt, CAROL)["refresh_token"]
        t1 = session.refresh_token(rt.server.token_url, refresh_token=t0)["refresh_token"]
        response = session.revoke_token(revoke_url, token=t0, token_type_hint="refresh_token")  # the retired one
        assert response.status_code == 200, response.text
        with pytest.raises(OAuthError) as caught:
            session.refresh_token(rt.server.token_url, refresh_token=t1)
        assert (caught.value.error, caught.value.description) == (UNKNOWN["error"], UNKNOWN["error_description"])


def test_revoke_by_another_client_or_with_a_wrong_secret_changes_nothing(rt: RefreshTenant) -> None:
    token = login(rt.server, CAROL, client_id=CONFIDENTIAL)["refresh_token"]
    revoke_url = rt.server.base_url + "/oauth/revoke"
    wrong = httpx.post(revoke_url, data={"client_id": CONFIDENTIAL, "client_secret": "x" * 40, "token": token})
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    foreign = httpx.post(revoke_url, data={"client_id": PUBLIC, "token": token})
    assert foreign.status_code == 200 and foreign.content == b""  # says nothing about tokens the caller does not own
    missing = httpx.post(revoke_url, data={"client_id": PUBLIC})
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    assert refresh(rt.server, token, client_id=CONFIDENTIAL).status_code == 200


# --- /userinfo --------------------------------------------------------------------------------------------------


def test_userinfo_get_and_post_with_a_refreshed_access_token(rt: RefreshTenant) -> None:
    first = sdk_login(rt, GRACE)
    refreshed = sdk(rt).refresh_token(first["refresh_token"])
    access_token = refreshed["access_token"]
    grace = rt.user_ids[GRACE]

    info = Users(rt.server.domain, protocol="http").userinfo(access_token)  # GET, through the SDK
    assert info["sub"] == grace
    assert (info["email"], info["email_verified"], info["name"]) == (GRACE, True, "Grace")
    assert "updated_at" in info
    bearer = {"Authorization": f"Bearer {access_token}"}
    posted = httpx.post(rt.server.base_url + "/userinfo", headers=bearer)  # POST
    assert posted.status_code == 200 and posted.json() == info
    assert posted.headers["cache-control"] == "no-store"
    with authlib_session(PUBLIC, token={"access_token": access_token, "token_type": "Bearer"}) as session:
        assert session.get(rt.server.base_url + "/userinfo").json() == info  # Authlib adds the bearer header
        assert session.post(rt.server.base_url + "/userinfo").json() == info

    # Values are read now, not frozen at login: rename Grace, the same access token shows the new name.
    path = rt.workdir / "tenant-grace.toml"
    apply(rt.env, path, tenant_toml(users={GRACE: {"name": "Grace Hopper"}}))
    try:
        assert Users(rt.server.domain, protocol="http").userinfo(access_token)["name"] == "Grace Hopper"
    finally:
        apply(rt.env, path, tenant_toml())

    # The standard claims follow the scopes of the (narrowed) token; without openid there is no userinfo at all.
    only_openid = sdk(rt).refresh_token(refreshed["refresh_token"], scope="openid")
    assert httpx.get(
        rt.server.base_url + "/userinfo", headers={"Authorization": f"Bearer {only_openid['access_token']}"}
    ).json() == {"sub": grace, PROTOCOL_CLAIM: "oauth2-refresh-token"}  # the rule's ID-token claim (§3.1)
    no_openid = sdk(rt).refresh_token(only_openid["refresh_token"], scope="read:notes")["access_token"]
    for method in ("GET", "POST"):
        denied = httpx.request(
            method, rt.server.base_url + "/userinfo", headers={"Authorization": f"Bearer {no_openid}"}
        )
        assert denied.status_code == 401 and denied.json()["error"] == "invalid_token"
        assert denied.headers["www-authenticate"].startswith("Bearer ")
        missing = httpx.request(method, rt.server.base_url + "/userinfo")
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    error = sdk_error(lambda: Users(rt.server.domain, protocol="http").userinfo(no_openid))
    assert error.status_code == 401


def test_userinfo_carries_the_namespaced_claims_rules_added_to_the_id_token(rt: RefreshTenant) -> None:
    """API.md §3.1: "plus namespaced custom claims added to the ID token by Actions"."""
    refreshed = sdk(rt).refresh_token(sdk_login(rt, GRACE)["refresh_token"])
    assert unverified(refreshed["id_token"])[PROTOCOL_CLAIM] == "oauth2-refresh-token"
    info = Users(rt.server.domain, protocol="http").userinfo(refreshed["access_token"])
    assert info.get(PROTOCOL_CLAIM) == "oauth2-refresh-token", info


# --- Rules ------------------------------------------------------------------------------------------------------


def test_rules_see_oauth2_refresh_token_on_refresh(rt: RefreshTenant) -> None:
    first = sdk_login(rt, CAROL)
    assert verify_access_token(rt.server, first["access_token"], audience=RT_API)[PROTOCOL_CLAIM] == "oauth2-password"
    assert verify_id_token(rt.server, first["id_token"], client_id=PUBLIC)[PROTOCOL_CLAIM] == "oauth2-password"

    refreshed = sdk(rt).refresh_token(first["refresh_token"])
    claims = verify_access_token(rt.server, refreshed["access_token"], audience=RT_API)
    assert claims[PROTOCOL_CLAIM] == "oauth2-refresh-token"
    assert verify_id_token(rt.server, refreshed["id_token"], client_id=PUBLIC)[PROTOCOL_CLAIM] == "oauth2-refresh-token"

    with authlib_session(BASIC) as session:
        token = session.refresh_token(
            rt.server.token_url, refresh_token=authlib_login(session, rt, CAROL)["refresh_token"]
        )
    assert (
        verify_access_token(rt.server, token["access_token"], audience=RT_API)[PROTOCOL_CLAIM] == "oauth2-refresh-token"
    )
    # The rule that ran is the one stored: servers follow the stored rules (cleared when this module ends).
    assert [rule["name"] for rule in json.loads(run_identity(["rules", "list"], rt.env).stdout)] == ["record protocol"]


# --- Operator commands ------------------------------------------------------------------------------------------


def sessions(rt: RefreshTenant, user_id: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads(run_identity(["users", "sessions", user_id], rt.env).stdout)
    return listed


def test_cli_lists_and_revokes_a_users_sessions(rt: RefreshTenant) -> None:
    frank = rt.user_ids[FRANK]
    assert sessions(rt, frank) == []
    a0 = login(rt.server, FRANK)["refresh_token"]
    a1 = refresh(rt.server, a0).json()["refresh_token"]
    a2 = refresh(rt.server, a1).json()["refresh_token"]
    b0 = login(rt.server, FRANK, scope="offline_access read:notes")["refresh_token"]
    c0 = login(rt.server, FRANK, client_id=CONFIDENTIAL)["refresh_token"]
    carol = login(rt.server, CAROL)["refresh_token"]

    listed = sessions(rt, frank)
    assert len(listed) == 3  # one per family: rotation does not add sessions
    families = {row["family_id"] for row in listed}
    assert families == {family_rows(rt.database_url, token)[0]["family_id"] for token in (a2, b0, c0)}
    assert sorted(row["client_id"] for row in listed) == sorted([PUBLIC, PUBLIC, CONFIDENTIAL])
    assert {row["connection"] for row in listed} == {CONNECTION}
    assert {row["audience"] for row in listed} == {RT_API}
    full = sorted(FULL_SCOPE.split())
    assert sorted(sorted(row["scopes"]) for row in listed) == sorted([full, full, ["offline_access", "read:notes"]])
    assert all(row["expires_at"] and row["idle_expires_at"] for row in listed)

    revoked = json.loads(run_identity(["users", "revoke-sessions", frank], rt.env).stdout)
    assert revoked == {"user_id": frank, "revoked_tokens": 5}  # every unrevoked row: a0, a1, a2, b0, c0
    assert sessions(rt, frank) == []
    for token in (a2, b0):
        assert_refused(refresh(rt.server, token))
    assert_refused(refresh(rt.server, c0, client_id=CONFIDENTIAL))
    assert {row["revoked_reason"] for row in family_rows(rt.database_url, a0)} == {"admin"}
    assert refresh(rt.server, carol).status_code == 200  # another user's sessions are untouched

    unknown = subprocess.run(
        [*identity_command(), "users", "revoke-sessions", "auth0|nobody"],
        env=rt.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert unknown.returncode != 0 and "no user" in unknown.stderr
