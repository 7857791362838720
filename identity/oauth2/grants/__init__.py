"""Grant types of the token endpoint, one class each, keyed by their grant-type string."""

from identity.oauth2.grants.base import Grant
from identity.oauth2.grants.client_credentials import ClientCredentialsGrant
from identity.oauth2.grants.mfa import MfaOobGrant, MfaOtpGrant, MfaRecoveryCodeGrant
from identity.oauth2.grants.password import PasswordGrant, PasswordRealmGrant
from identity.oauth2.grants.refresh_token import RefreshTokenGrant
from identity.oauth2.grants.webauthn import MfaWebAuthnGrant, WebAuthnGrant

__all__ = [
    "CLIENT_CREDENTIALS",
    "MFA_OOB",
    "MFA_OTP",
    "MFA_RECOVERY_CODE",
    "MFA_WEBAUTHN",
    "PASSWORD",
    "PASSWORD_REALM",
    "REFRESH_TOKEN",
    "WEBAUTHN",
    "ClientCredentialsGrant",
    "Grant",
    "MfaOobGrant",
    "MfaOtpGrant",
    "MfaRecoveryCodeGrant",
    "MfaWebAuthnGrant",
    "PasswordGrant",
    "PasswordRealmGrant",
    "RefreshTokenGrant",
    "WebAuthnGrant",
]

PASSWORD = PasswordGrant.GRANT_TYPE
PASSWORD_REALM = PasswordRealmGrant.GRANT_TYPE
MFA_OTP = MfaOtpGrant.GRANT_TYPE
MFA_OOB = MfaOobGrant.GRANT_TYPE
MFA_RECOVERY_CODE = MfaRecoveryCodeGrant.GRANT_TYPE
REFRESH_TOKEN = RefreshTokenGrant.GRANT_TYPE
CLIENT_CREDENTIALS = ClientCredentialsGrant.GRANT_TYPE
MFA_WEBAUTHN = MfaWebAuthnGrant.GRANT_TYPE
WEBAUTHN = WebAuthnGrant.GRANT_TYPE
