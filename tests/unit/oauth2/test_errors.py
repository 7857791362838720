import pytest

from identity.oauth2.errors import (
    AccessDenied,
    ExpiredToken,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    MfaRequired,
    OAuthError,
    ServerError,
    TooManyAttempts,
    Unauthorized,
    UnauthorizedClient,
    UnsupportedGrantType,
)


@pytest.mark.parametrize(
    ("cls", "status", "error"),
    [
        (InvalidRequest, 400, "invalid_request"),
        (InvalidClient, 401, "invalid_client"),
        (InvalidGrant, 403, "invalid_grant"),
        (UnauthorizedClient, 403, "unauthorized_client"),
        (UnsupportedGrantType, 400, "unsupported_grant_type"),
        (InvalidScope, 400, "invalid_scope"),
        (AccessDenied, 403, "access_denied"),
        (Unauthorized, 401, "unauthorized"),
        (ExpiredToken, 403, "expired_token"),
        (TooManyAttempts, 429, "too_many_attempts"),
        (ServerError, 500, "server_error"),
    ],
)
def test_wire_form_of_each_error(cls, status, error):
    exc = cls("something went wrong")
    assert issubclass(cls, OAuthError)
    assert exc.status_code == status
    assert exc.to_body() == {"error": error, "error_description": "something went wrong"}


def test_default_descriptions():
    assert InvalidClient().to_body() == {"error": "invalid_client", "error_description": "Client authentication failed"}
    assert UnsupportedGrantType().to_body() == {
        "error": "unsupported_grant_type",
        "error_description": "Grant type not supported",
    }


def test_error_without_description_has_no_description_member():
    assert InvalidRequest().to_body() == {"error": "invalid_request"}


def test_mfa_required_carries_the_mfa_token():
    exc = MfaRequired("the-mfa-token")
    assert exc.status_code == 403
    assert exc.to_body() == {
        "error": "mfa_required",
        "error_description": "Multifactor authentication required",
        "mfa_token": "the-mfa-token",
    }


def test_invalid_client_challenge_only_after_basic():
    assert InvalidClient().headers() == {}
    assert InvalidClient(challenge_realm="https://id.test/").headers() == {
        "WWW-Authenticate": 'Basic realm="https://id.test/", charset="UTF-8"'
    }


@pytest.mark.parametrize("cls", [InvalidRequest, InvalidGrant, AccessDenied, ServerError, Unauthorized])
def test_other_errors_add_no_headers(cls):
    assert cls("x").headers() == {}


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("Service not found: https://ok.test/", "Service not found: https://ok.test/"),
        ('say "hi"', "say ?hi?"),
        ("back\\slash", "back?slash"),
        ("new\nline\ttab\x00nul", "new?line?tab?nul"),
        ("Service not found: https://ÿ.test/☃", "Service not found: https://?.test/?"),
        ("\x7f", "?"),
    ],
)
def test_description_is_restricted_to_rfc6749_characters(description, expected):
    # RFC 6749 §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E.
    exc = AccessDenied(description)
    assert exc.description == expected
    assert exc.to_body()["error_description"] == expected
    assert str(exc) == expected
