"""Every default of the tenant's configuration, each spelled once.

A key left out of a tenant file, a row created without the column and an engine record built without the field must
mean the same value, so the tenant file's schema (`identity.tenant_schema`), the tables (`identity.store.models`), the
engine's records (`identity.oauth2.interfaces`), attack protection and the Management API all take them from here.
Plain values only: this module imports nothing, so every layer may import it.
"""

from __future__ import annotations

from typing import Final

# [tenant]
FRIENDLY_NAME: Final = "identity"
MFA_POLICY: Final = "if-enrolled"
MFA_TOKEN_LIFETIME: Final = 600
WEBAUTHN_USER_VERIFICATION: Final = "preferred"
WEBAUTHN_ATTESTATION: Final = "none"

# [tenant] attack protection: Auth0's defaults (API.md §4).
BRUTE_FORCE_ENABLED: Final = True
BRUTE_FORCE_MODE: Final = "count_per_identifier_and_ip"
BRUTE_FORCE_MAX_ATTEMPTS: Final = 10
BRUTE_FORCE_BLOCK_SECONDS: Final = 900
SUSPICIOUS_IP_ENABLED: Final = True
SUSPICIOUS_IP_SHIELDS: Final = ("block",)
SUSPICIOUS_IP_MAX_ATTEMPTS: Final = 100
SUSPICIOUS_IP_RATE: Final = 864_000
"""Milliseconds until a throttled address may try once more (14.4 minutes)."""
BREACHED_PASSWORD_ENABLED: Final = False
BREACHED_PASSWORD_SHIELDS: Final = ("block",)
BREACHED_PASSWORD_METHOD: Final = "standard"

# [[connections]]
CONNECTION_STRATEGY: Final = "auth0"

# [[apis]]
API_SIGNING_ALG: Final = "RS256"
API_TOKEN_LIFETIME: Final = 86_400
API_ALLOW_OFFLINE_ACCESS: Final = False

# [[clients]]
CLIENT_AUTH_METHOD: Final = "client_secret_post"
CLIENT_IP_HEADER_TRUSTED: Final = False

# [[clients]] refresh_token: Auth0's ``refresh_token`` object (API.md §1.7).
REFRESH_ROTATION_TYPE: Final = "rotating"
REFRESH_EXPIRATION_TYPE: Final = "expiring"
REFRESH_TOKEN_LIFETIME: Final = 2_592_000
REFRESH_IDLE_TOKEN_LIFETIME: Final = REFRESH_TOKEN_LIFETIME
REFRESH_INFINITE_TOKEN_LIFETIME: Final = False
REFRESH_INFINITE_IDLE_TOKEN_LIFETIME: Final = False
REFRESH_LEEWAY: Final = 0

# [[rules]]
RULE_ENABLED: Final = True
RULE_TIMEOUT_SECONDS: Final = 5.0
