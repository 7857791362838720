import pytest

from identity.oauth2.interfaces import Api
from identity.oauth2.scopes import OIDC_SCOPES, STANDARD_CLAIM_SCOPES, resolve_scopes

API = Api(identifier="https://api.test/", name="API", scopes=("read:a", "write:a", "delete:a"))
EMPTY_API = Api(identifier="https://empty.test/", name="Empty", scopes=())
ALL = ("read:a", "write:a", "delete:a")
OIDC_ALL = ("openid", "profile", "email", "address", "phone")


def test_standard_claim_scopes():
    assert STANDARD_CLAIM_SCOPES == OIDC_ALL
    assert frozenset((*OIDC_ALL, "offline_access")) == OIDC_SCOPES


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        pytest.param(None, ALL, id="scope omitted: every API scope"),
        pytest.param((), ALL, id="empty scope: every API scope"),
        pytest.param(("read:a",), ("read:a",), id="subset"),
        pytest.param(("delete:a", "read:a"), ("delete:a", "read:a"), id="subset keeps the asked order"),
        pytest.param(("read:a", "bogus"), ("read:a",), id="unknown scope dropped"),
        pytest.param(("bogus",), (), id="only unknown API scopes: nothing"),
        pytest.param(("READ:A",), (), id="scope names are exact"),
        pytest.param(("openid",), (*OIDC_ALL, *ALL), id="openid alone: all OIDC scopes and all API scopes"),
        pytest.param(("openid", "email"), ("openid", "email", *ALL), id="openid and email: not expanded"),
        pytest.param(("profile",), ("profile", *ALL), id="profile without openid"),
        pytest.param(("openid", "profile", "read:a"), ("openid", "profile", "read:a"), id="mixed"),
        pytest.param(("offline_access",), ALL, id="offline_access is left to the caller"),
        pytest.param(("offline_access", "write:a"), ("write:a",), id="offline_access with an API scope"),
    ],
)
def test_resolve_scopes(requested, expected):
    assert resolve_scopes(requested, API) == expected


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (None, ()),
        (("read:a",), ()),
        (("openid",), OIDC_ALL),
        (("openid", "email"), ("openid", "email")),
    ],
)
def test_resolve_scopes_without_api(requested, expected):
    assert resolve_scopes(requested, None) == expected


def test_api_without_scopes_grants_no_api_scope():
    assert resolve_scopes(None, EMPTY_API) == ()
    assert resolve_scopes(("openid",), EMPTY_API) == OIDC_ALL
    assert resolve_scopes(("openid", "profile", "read:a"), EMPTY_API) == ("openid", "profile")
