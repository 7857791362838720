"""Grant types of the token endpoint, one class each, keyed by their grant-type string."""

from identity.oauth2.grants.base import Grant
from identity.oauth2.grants.password import PasswordGrant, PasswordRealmGrant

__all__ = [
    "CLIENT_CREDENTIALS",
    "MFA_OOB",
    "MFA_OTP",
    "MFA_RECOVERY_CODE",
    "PASSWORD",
    "PASSWORD_REALM",
    "REFRESH_TOKEN",
    "Grant",
    "PasswordGrant",
    "PasswordRealmGrant",
]

PASSWORD = PasswordGrant.GRANT_TYPE
PASSWORD_REALM = PasswordRealmGrant.GRANT_TYPE
MFA_OTP = "http://auth0.com/oauth/grant-type/mfa-otp"
MFA_OOB = "http://auth0.com/oauth/grant-type/mfa-oob"
MFA_RECOVERY_CODE = "http://auth0.com/oauth/grant-type/mfa-recovery-code"
REFRESH_TOKEN = "refresh_token"  # noqa: S105  (a grant type, not a secret)
CLIENT_CREDENTIALS = "client_credentials"
