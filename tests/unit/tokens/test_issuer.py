from datetime import UTC, datetime

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from identity.clock import FrozenClock
from identity.crypto import SecretBox
from identity.oauth2.interfaces import Api, Client, Connection, GrantResult, User
from identity.settings import EncryptionKeys
from identity.tokens.issuer import GTY, JwtIssuer, profile_claims
from identity.tokens.keys import KeyRing, SigningKey, generate_key

ISSUER = "https://identity.test/"
NOW = 1_800_000_000
BOX = SecretBox(EncryptionKeys.generate("unit"))
API = Api(identifier="https://api.test/", name="API", scopes=("read:a",), token_lifetime=3600)
ES_API = Api(identifier="https://es.test/", name="ES", scopes=("read:e",), signing_alg="ES256", token_lifetime=600)
CLIENT = Client(
    client_id="the-app",
    name="The App",
    token_endpoint_auth_method="none",
    secret_hash=None,
    grant_types=frozenset({"password"}),
    connections=frozenset({"customers"}),
)
CONNECTION = Connection(id=1, name="customers")
UPDATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
ALICE = User(
    user_id="auth0|abc",
    connection="customers",
    email="alice@example.test",
    email_verified=True,
    username="alice",
    name="Alice",
    nickname="alice",
    picture="https://pic.test/a.png",
    updated_at=UPDATED,
)
PASSWORD_REALM = "http://auth0.com/oauth/grant-type/password-realm"


@pytest.fixture(scope="module")
def ring() -> KeyRing:
    keys = []
    for alg in ("RS256", "ES256"):
        row = generate_key(alg, BOX)
        pem = BOX.open(row.private_key, purpose="signing-key:" + row.kid)
        private_key = serialization.load_pem_private_key(pem, password=None)
        keys.append(SigningKey(row.kid, alg, private_key, row.public_jwk, active=True))
    return KeyRing(keys)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW + 0.75)


@pytest.fixture
def issuer(ring, clock) -> JwtIssuer:
    return JwtIssuer(ring, issuer=ISSUER, clock=clock, id_token_lifetime=36_000)


def result(scopes, *, api=API, grant_type="password", user=ALICE, amr=("pwd",)) -> GrantResult:
    return GrantResult(
        grant_type=grant_type,
        client=CLIENT,
        user=user,
        connection=CONNECTION,
        api=api,
        audience=api.identifier if api else None,
        scopes=tuple(scopes),
        amr=amr,
    )


def verify(ring: KeyRing, token: str, audience: str) -> tuple[dict, dict]:
    header = jwt.get_unverified_header(token)
    keys = jwt.PyJWKSet.from_dict(ring.jwks())
    claims = jwt.decode(
        token,
        keys[header["kid"]].key,
        algorithms=[header["alg"]],
        audience=audience,
        issuer=ISSUER,
        options={"verify_exp": False, "verify_iat": False},
    )
    return header, claims


async def test_access_token_claims_for_an_api(issuer, ring):
    response = await issuer.issue(result(["read:a"]))
    header, claims = verify(ring, response.access_token, API.identifier)
    assert header["alg"] == "RS256"
    assert header["typ"] == "JWT"
    jti = claims.pop("jti")
    assert isinstance(jti, str)
    assert len(jti) >= 16
    assert claims == {
        "iss": ISSUER,
        "sub": "auth0|abc",
        "aud": API.identifier,
        "iat": NOW,
        "exp": NOW + 3600,
        "scope": "read:a",
        "azp": "the-app",
        "gty": "password",
    }
    assert response.expires_in == 3600
    assert response.scope == "read:a"
    assert response.token_type == "Bearer"
    assert response.id_token is None
    assert response.refresh_token is None


async def test_openid_adds_the_userinfo_audience_and_an_id_token(issuer, ring):
    response = await issuer.issue(result(["openid", "read:a"]))
    _, claims = verify(ring, response.access_token, API.identifier)
    assert claims["aud"] == [API.identifier, ISSUER + "userinfo"]
    assert response.id_token is not None
    assert issuer.userinfo_audience == "https://identity.test/userinfo"


async def test_es256_api_is_signed_with_es256(issuer, ring):
    response = await issuer.issue(result(["read:e"], api=ES_API))
    header, claims = verify(ring, response.access_token, ES_API.identifier)
    assert header["alg"] == "ES256"
    assert claims["exp"] - claims["iat"] == 600
    assert response.expires_in == 600


async def test_without_api_the_token_is_for_userinfo_only(issuer, ring):
    response = await issuer.issue(result(["openid"], api=None))
    header, claims = verify(ring, response.access_token, ISSUER + "userinfo")
    assert header["alg"] == "RS256"
    assert claims["aud"] == ISSUER + "userinfo"
    assert claims["exp"] == NOW + 86_400
    assert response.expires_in == 86_400


@pytest.mark.parametrize("grant_type", ["password", PASSWORD_REALM])
async def test_gty_is_password_for_both_password_grants(issuer, ring, grant_type):
    response = await issuer.issue(result(["read:a"], grant_type=grant_type))
    assert verify(ring, response.access_token, API.identifier)[1]["gty"] == "password"
    assert GTY[grant_type] == "password"


async def test_every_token_has_its_own_jti(issuer, ring):
    first = await issuer.issue(result(["read:a"]))
    second = await issuer.issue(result(["read:a"]))
    assert (
        verify(ring, first.access_token, API.identifier)[1]["jti"]
        != verify(ring, second.access_token, API.identifier)[1]["jti"]
    )


async def test_iat_follows_the_clock(issuer, ring, clock):
    clock.advance(100)
    response = await issuer.issue(result(["read:a"]))
    claims = verify(ring, response.access_token, API.identifier)[1]
    assert claims["iat"] == NOW + 100
    assert claims["exp"] == NOW + 100 + 3600


async def test_password_only_logins_carry_no_amr(issuer, ring):
    response = await issuer.issue(result(["openid"]))
    assert "amr" not in verify(ring, response.access_token, API.identifier)[1]
    assert "amr" not in verify(ring, response.id_token, "the-app")[1]


async def test_mfa_logins_carry_amr(issuer, ring):
    response = await issuer.issue(result(["openid"], amr=("pwd", "otp", "mfa")))
    assert verify(ring, response.access_token, API.identifier)[1]["amr"] == ["pwd", "otp", "mfa"]
    assert verify(ring, response.id_token, "the-app")[1]["amr"] == ["pwd", "otp", "mfa"]


# -- ID token -------------------------------------------------------------------------------------------------------


async def test_id_token_claims(issuer, ring):
    response = await issuer.issue(result(["openid", "profile", "email"], api=ES_API))
    header, claims = verify(ring, response.id_token, "the-app")
    assert header["alg"] == "RS256"
    assert header["typ"] == "JWT"
    assert claims == {
        "iss": ISSUER,
        "sub": "auth0|abc",
        "aud": "the-app",
        "iat": NOW,
        "exp": NOW + 36_000,
        "name": "Alice",
        "nickname": "alice",
        "picture": "https://pic.test/a.png",
        "preferred_username": "alice",
        "updated_at": "2026-01-02T03:04:05Z",
        "email": "alice@example.test",
        "email_verified": True,
    }


async def test_id_token_lifetime_is_configurable(ring, clock):
    issuer = JwtIssuer(ring, issuer=ISSUER, clock=clock, id_token_lifetime=60)
    response = await issuer.issue(result(["openid"]))
    claims = verify(ring, response.id_token, "the-app")[1]
    assert claims["exp"] - claims["iat"] == 60


@pytest.mark.parametrize(
    ("scopes", "present", "absent"),
    [
        (["openid"], set(), {"name", "email", "nickname", "picture", "email_verified", "preferred_username"}),
        (["openid", "email"], {"email", "email_verified"}, {"name", "nickname", "picture", "updated_at"}),
        (["openid", "profile"], {"name", "nickname", "picture", "updated_at"}, {"email", "email_verified"}),
    ],
)
async def test_id_token_profile_claims_follow_the_scopes(issuer, ring, scopes, present, absent):
    response = await issuer.issue(result(scopes))
    claims = verify(ring, response.id_token, "the-app")[1]
    assert present <= set(claims)
    assert not absent & set(claims)


def test_profile_claims_skip_missing_values():
    bare = User(user_id="auth0|x", connection="c", email="x@example.test")
    assert profile_claims(bare, {"profile", "email"}) == {"email": "x@example.test", "email_verified": False}
    assert profile_claims(User(user_id="auth0|y", connection="c", username="y"), {"email"}) == {}
    assert profile_claims(User(user_id="auth0|y", connection="c", username="y"), {"profile"}) == {
        "preferred_username": "y"
    }


async def test_acr_and_auth_time_when_the_grant_knows_them(issuer, ring):
    """The first-party apps code carries them; grants that do not know them leave both out (issue 15)."""
    from dataclasses import replace

    multi_factor = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"
    known = replace(result(["openid", "read:a"], amr=("pwd", "mfa", "otp")), acr=multi_factor, auth_time=NOW - 5.5)
    response = await issuer.issue(known)
    _, access = verify(ring, response.access_token, API.identifier)
    _, identity = verify(ring, response.id_token, CLIENT.client_id)
    for claims in (access, identity):
        assert claims["acr"] == multi_factor and claims["auth_time"] == NOW - 6  # whole seconds
    _, plain = verify(ring, (await issuer.issue(result(["read:a"]))).access_token, API.identifier)
    assert "acr" not in plain and "auth_time" not in plain
