"""The tenant file's schema: each table's keys, their types, defaults and limits, and the checker that reads them.

Every table of a tenant file is a class below (``[tenant]`` is `TenantTable`, each ``[[apis]]`` an `ApiTable`, ...):
one field per key, annotated with the type the key must have, defaulting to `identity.tenant_defaults` (the tables
and the engine's records use the same values), with the key's limits beside it. `check` compares a parsed table with
its class and raises `TenantFileError` at the first problem, naming the place as the user wrote it (``[[apis]] #2:
token_lifetime must be between 60 and 2592000 seconds``). The Management API checks what it is sent with the same
classes (`identity.tenant_admin`), so the API and ``identity tenant apply`` accept exactly the same configurations.

The classes are declarations read by `check`; nothing builds them from a file. The checker is hand-written rather than
msgspec's so that each message names the key as the file spells it and says what is allowed.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

from identity import tenant_defaults as defaults
from identity.accounts.attack import BRUTE_FORCE_MODES
from identity.accounts.factors import MFA_POLICIES
from identity.accounts.password_policy import MIN_LENGTH_WITH_MFA
from identity.accounts.webauthn import ATTESTATION_PREFERENCES, USER_VERIFICATION
from identity.network import parse_networks
from identity.oauth2.client_auth import AUTH_METHODS
from identity.rules.pipeline import RuleLoadError, load_handler
from identity.tokens.keys import SUPPORTED_ALGS

__all__ = [
    "TENANT_KEYS",
    "ApiTable",
    "ClientGrantTable",
    "ClientTable",
    "ConnectionTable",
    "RefreshTokenTable",
    "RuleTable",
    "TenantFileError",
    "TenantTable",
    "UserTable",
    "check",
    "validate",
]

MAX_TOKEN_LIFETIME = 2_592_000
MAX_REFRESH_LIFETIME = 31_557_600


class TenantFileError(ValueError):
    """The file is not a valid tenant description; the message names the place."""


Check = Callable[[str, Any, Mapping[str, Any]], str | None]
"""``(where, value, entry)``: what is wrong with a key's value, or ``None``.

``where`` names the table; ``entry`` is the table with the defaults filled in, for a limit that depends on another
key. A table's ``CHECKS`` get the whole table as the value.
"""


NOT_GIVEN: Any = None
"""The default of a key that may be left out but, when given, must have its type (unlike a key typed ``X | None``)."""


class AddressList(list[str]):
    """A list of IP addresses and CIDR networks (`identity.network.parse_networks`)."""


@dataclass(frozen=True)
class Limit:
    """``test(value, entry)`` must hold, else ``message`` (with ``{where}``, the table's place)."""

    test: Callable[[Any, Mapping[str, Any]], bool]
    message: str

    def __call__(self, where: str, value: Any, entry: Mapping[str, Any]) -> str | None:
        """The message when the test fails."""
        return None if self.test(value, entry) else self.message.format(where=where)


@dataclass(frozen=True)
class OneOf:
    """The value must be one of ``choices`` (a value of another type is not, so its type is not checked first)."""

    choices: Sequence[str]
    message: str
    """With ``{where}`` and ``{choices}``."""

    def __call__(self, where: str, value: Any, entry: Mapping[str, Any]) -> str | None:
        """The message when the value is not a choice."""
        return None if value in self.choices else self.message.format(where=where, choices=", ".join(self.choices))


def between(low: float, high: float, message: str) -> Limit:
    """``low <= value <= high``."""
    return Limit(lambda value, _: low <= value <= high, message)


def checks(*items: Check, label: str | None = None) -> dict[str, Any]:
    """A key's checks, in order, as its field's metadata; ``label`` names a nested table (not ``<where> <key>``)."""
    return {"checks": items, "label": label}


# --- the tables ---------------------------------------------------------------------------------------------------


def _known_stages(where: str, stages: Mapping[str, Any], _: Mapping[str, Any]) -> str | None:
    unknown = [name for name in stages if name not in ("pre-login", "pre-user-registration")]
    return f"{where} stage: unknown stage {unknown[0]!r}" if unknown else None


_STAGE_LIMITS = "{where}: max_attempts 1-10000, rate 1-86400000 (milliseconds)"


@dataclass(frozen=True, kw_only=True)
class StageTable:
    """One stage of suspicious-IP throttling (``pre-login``): failures per address, and how fast they come back."""

    max_attempts: int = field(
        default=defaults.SUSPICIOUS_IP_MAX_ATTEMPTS, metadata=checks(between(1, 10_000, _STAGE_LIMITS))
    )
    rate: int = field(default=defaults.SUSPICIOUS_IP_RATE, metadata=checks(between(1, 86_400_000, _STAGE_LIMITS)))


@dataclass(frozen=True, kw_only=True)
class SuspiciousIpTable:
    """``[tenant.suspicious_ip_throttling]``, Auth0's object (API.md §4.2)."""

    enabled: bool = defaults.SUSPICIOUS_IP_ENABLED
    shields: list[str] = field(default_factory=list)
    allowlist: AddressList = field(default_factory=AddressList)
    stage: dict[str, StageTable] = field(default_factory=dict, metadata=checks(_known_stages))


@dataclass(frozen=True, kw_only=True)
class BreachedPasswordTable:
    """``[tenant.breached_password_detection]``, Auth0's object (API.md §4.6)."""

    enabled: bool = defaults.BREACHED_PASSWORD_ENABLED
    shields: list[str] = field(default_factory=list)
    method: str = field(
        default=defaults.BREACHED_PASSWORD_METHOD,
        metadata=checks(
            OneOf(
                (defaults.BREACHED_PASSWORD_METHOD,),
                '{where} method must be "standard" (identity checks its own breached-password lists)',
            )
        ),
    )


@dataclass(frozen=True, kw_only=True)
class TenantTable:
    """``[tenant]``, or a ``PATCH /tenants/settings`` body; attack protection is named after Auth0's (API.md §4)."""

    # Not checked (as before): any value is stored, "" clears a default.
    friendly_name: Any = defaults.FRIENDLY_NAME
    default_directory: Any = None
    default_audience: Any = None
    mfa_policy: str = field(
        default=defaults.MFA_POLICY, metadata=checks(OneOf(MFA_POLICIES, "{where} mfa_policy must be one of {choices}"))
    )
    mfa_token_lifetime: int = field(
        default=defaults.MFA_TOKEN_LIFETIME,
        metadata=checks(between(60, 3600, "{where} mfa_token_lifetime must be between 60 and 3600 seconds")),
    )
    brute_force_max_attempts: int = field(
        default=defaults.BRUTE_FORCE_MAX_ATTEMPTS,
        metadata=checks(between(1, 100, "{where} brute_force_max_attempts must be between 1 and 100 (Auth0's range)")),
    )
    brute_force_block_seconds: int = field(
        default=defaults.BRUTE_FORCE_BLOCK_SECONDS,
        metadata=checks(
            between(1, 2_592_000, "{where} brute_force_block_seconds must be between 1 and 2592000 (30 days)")
        ),
    )
    webauthn_user_verification: str = field(
        default=defaults.WEBAUTHN_USER_VERIFICATION,
        metadata=checks(OneOf(USER_VERIFICATION, "{where} webauthn_user_verification must be one of {choices}")),
    )
    webauthn_attestation: str = field(
        default=defaults.WEBAUTHN_ATTESTATION,
        metadata=checks(OneOf(ATTESTATION_PREFERENCES, "{where} webauthn_attestation must be one of {choices}")),
    )
    brute_force_enabled: bool = defaults.BRUTE_FORCE_ENABLED
    brute_force_mode: str = field(
        default=defaults.BRUTE_FORCE_MODE,
        metadata=checks(OneOf(BRUTE_FORCE_MODES, "{where} brute_force_mode must be one of {choices}")),
    )
    brute_force_allowlist: AddressList = field(default_factory=AddressList)
    password_min_length: int | None = field(
        default=None,
        metadata=checks(
            between(
                MIN_LENGTH_WITH_MFA, 128, f"{{where}} password_min_length must be between {MIN_LENGTH_WITH_MFA} and 128"
            )
        ),
    )
    """``None``: chosen by ``mfa_policy`` (`identity.accounts.password_policy`)."""
    suspicious_ip_throttling: SuspiciousIpTable = field(
        default_factory=SuspiciousIpTable, metadata=checks(label="[tenant.suspicious_ip_throttling]")
    )
    breached_password_detection: BreachedPasswordTable = field(
        default_factory=BreachedPasswordTable, metadata=checks(label="[tenant.breached_password_detection]")
    )


@dataclass(frozen=True, kw_only=True)
class ConnectionTable:
    """A ``[[connections]]`` table: a user directory."""

    name: str
    strategy: str = field(
        default=defaults.CONNECTION_STRATEGY,
        metadata=checks(
            OneOf((defaults.CONNECTION_STRATEGY,), "{where}: only the 'auth0' (database) strategy is supported")
        ),
    )


@dataclass(frozen=True, kw_only=True)
class ApiTable:
    """An ``[[apis]]`` table: a resource server, whose ``identifier`` is its tokens' audience."""

    identifier: str
    name: Any = None  # not checked (as before); none: the identifier
    scopes: list[str] = field(default_factory=list)
    signing_alg: str = field(
        default=defaults.API_SIGNING_ALG,
        metadata=checks(OneOf(SUPPORTED_ALGS, "{where}: signing_alg must be one of {choices}")),
    )
    token_lifetime: int = field(
        default=defaults.API_TOKEN_LIFETIME,
        metadata=checks(
            between(
                60, MAX_TOKEN_LIFETIME, f"{{where}}: token_lifetime must be between 60 and {MAX_TOKEN_LIFETIME} seconds"
            )
        ),
    )
    allow_offline_access: bool = defaults.API_ALLOW_OFFLINE_ACCESS


@dataclass(frozen=True, kw_only=True)
class RefreshTokenTable:
    """A client's ``refresh_token``: Auth0's object (API.md §1.7), read as `oauth2.interfaces.RefreshTokenPolicy`."""

    rotation_type: str = field(
        default=defaults.REFRESH_ROTATION_TYPE,
        metadata=checks(
            OneOf(("rotating", "non-rotating"), "{where}: rotation_type must be 'rotating' or 'non-rotating'")
        ),
    )
    expiration_type: str = field(
        default=defaults.REFRESH_EXPIRATION_TYPE,
        metadata=checks(
            OneOf(("expiring", "non-expiring"), "{where}: expiration_type must be 'expiring' or 'non-expiring'")
        ),
    )
    token_lifetime: int = field(
        default=defaults.REFRESH_TOKEN_LIFETIME,
        metadata=checks(
            between(
                1,
                MAX_REFRESH_LIFETIME,
                f"{{where}}: token_lifetime must be between 1 and {MAX_REFRESH_LIFETIME} seconds",
            )
        ),
    )
    idle_token_lifetime: int = field(
        default=defaults.REFRESH_IDLE_TOKEN_LIFETIME,
        metadata=checks(
            Limit(
                lambda idle, entry: 1 <= idle <= entry["token_lifetime"],
                "{where}: idle_token_lifetime must be between 1 and token_lifetime",
            )
        ),
    )
    """Left out: the ``token_lifetime`` given (`identity.tenant_file`)."""
    infinite_token_lifetime: bool = defaults.REFRESH_INFINITE_TOKEN_LIFETIME
    infinite_idle_token_lifetime: bool = defaults.REFRESH_INFINITE_IDLE_TOKEN_LIFETIME
    leeway: int = field(
        default=defaults.REFRESH_LEEWAY,
        metadata=checks(between(0, 60, "{where}: leeway must be between 0 and 60 seconds")),
    )


def _public(entry: Mapping[str, Any]) -> bool:
    return bool(entry["token_endpoint_auth_method"] == "none")


@dataclass(frozen=True, kw_only=True)
class ClientTable:
    """A ``[[clients]]`` table: an application; a confidential one without ``client_secret`` gets one generated."""

    client_id: str
    token_endpoint_auth_method: str = field(
        default=defaults.CLIENT_AUTH_METHOD,
        metadata=checks(
            OneOf(AUTH_METHODS, "{where}: token_endpoint_auth_method must be one of {choices}"),
            Limit(
                lambda _, entry: not (_public(entry) and entry["client_secret"] is not None),
                "{where}: a public client (token_endpoint_auth_method = 'none') has no secret",
            ),
        ),
    )
    client_secret: str = field(
        default=NOT_GIVEN,
        metadata=checks(
            Limit(lambda secret, _: len(secret) >= 32, "{where}: client_secret must have at least 32 characters")
        ),
    )
    grant_types: list[str] = field(
        default_factory=list,
        metadata=checks(
            Limit(
                lambda grants, entry: not (_public(entry) and "client_credentials" in grants),
                "{where}: a public client cannot use the client_credentials grant",
            )
        ),
    )
    connections: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    refresh_token: RefreshTokenTable = field(default_factory=RefreshTokenTable)
    is_token_endpoint_ip_header_trusted: bool = field(
        default=defaults.CLIENT_IP_HEADER_TRUSTED,
        metadata=checks(
            Limit(
                lambda trusted, entry: not (trusted and _public(entry)),
                "{where}: is_token_endpoint_ip_header_trusted needs an authenticated client (not 'none')",
            )
        ),
    )
    name: Any = None  # not checked (as before); none: the client_id


@dataclass(frozen=True, kw_only=True)
class ClientGrantTable:
    """A ``[[client_grants]]`` table: the scopes a client may ask for an API by client_credentials."""

    client_id: str
    audience: str
    """The API's identifier; ``##ISSUER##`` stands for the issuer (`identity.tenant_file.ISSUER_KEYWORD`)."""
    scope: list[str]


def _handler_loads(where: str, handler: Any, _: Mapping[str, Any]) -> str | None:
    try:
        load_handler(handler)
    except RuleLoadError as exc:
        return f"{where}: {exc}"
    return None


@dataclass(frozen=True, kw_only=True)
class RuleTable:
    """A ``[[rules]]`` table: a rule of the login pipeline, in the file's order."""

    name: str
    enabled: bool = defaults.RULE_ENABLED
    timeout_seconds: float = field(
        default=defaults.RULE_TIMEOUT_SECONDS,
        metadata=checks(
            Limit(lambda seconds, _: 0 < seconds <= 30, "{where}: timeout_seconds must be between 0 and 30")
        ),
    )
    config: dict[str, Any] = field(default_factory=dict)
    handler: Any = field(metadata=checks(_handler_loads))
    """``module:function`` or ``file.py:function``; last, as importing it is the slowest check."""


@dataclass(frozen=True, kw_only=True)
class UserTable:
    """A ``[[users]]`` table; its values are the user service's to check (`identity.accounts.users.UserService`)."""

    CHECKS: ClassVar[tuple[Check, ...]] = (
        Limit(
            lambda user, _: bool(user.get("email") or user.get("username")),
            "{where}: a user needs an email or a username",
        ),
    )

    connection: Any
    password: Any
    email: Any = None
    username: Any = None
    email_verified: Any = None
    blocked: Any = None
    name: Any = None
    app_metadata: Any = None
    user_metadata: Any = None


TENANT_KEYS = tuple(sorted(item.name for item in fields(TenantTable)))
"""Every ``[tenant]`` key (the tenant export writes them all)."""

_ARRAYS: dict[str, type[Any]] = {
    "connections": ConnectionTable,
    "apis": ApiTable,
    "clients": ClientTable,
    "client_grants": ClientGrantTable,
    "rules": RuleTable,
    "users": UserTable,
}
"""The arrays of tables, in the order they are checked."""


# --- the checker ----------------------------------------------------------------------------------------------------


def validate(data: Mapping[str, Any]) -> None:
    """Check every key and value of a parsed tenant file."""
    if unknown := set(data) - {"tenant", *_ARRAYS}:
        raise TenantFileError(f"unknown section(s) {', '.join(sorted(unknown))}")
    check("[tenant]", data.get("tenant", {}), TenantTable)
    for section, schema in _ARRAYS.items():
        for i, table in enumerate(data.get(section, [])):
            check(f"[[{section}]] #{i + 1}", table, schema)
    _unique(
        data,
        "client_grants",
        lambda grant: (grant["client_id"], grant["audience"]),
        "a second grant for the same client and audience",
    )
    _unique(data, "rules", lambda rule: rule["name"], "duplicate rule name {key!r}")


def _unique(data: Mapping[str, Any], section: str, identity: Callable[[Mapping[str, Any]], Any], message: str) -> None:
    seen: set[Any] = set()
    for i, table in enumerate(data.get(section, [])):
        if (found := identity(table)) in seen:
            raise TenantFileError(f"[[{section}]] #{i + 1}: " + message.format(key=found))
        seen.add(found)


def check(where: str, table: Any, schema: type[Any]) -> None:
    """Check one table against its class (`TenantTable`, `ApiTable`, ...); `TenantFileError` names the first problem."""
    if not isinstance(table, Mapping):
        raise TenantFileError(f"{where}: expected a table")
    keys = _keys(schema)
    if unknown := set(table) - set(keys):
        raise TenantFileError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    if missing := {name for name, spec in keys.items() if spec.required} - set(table):
        raise TenantFileError(f"{where}: missing key(s) {', '.join(sorted(missing))}")
    entry = {**{name: spec.default for name, spec in keys.items() if not spec.required}, **table}
    for name, spec in keys.items():
        if name in table:
            spec.check(where, table[name], entry)
    for table_check in getattr(schema, "CHECKS", ()):
        if problem := table_check(where, table, entry):
            raise TenantFileError(problem)


@dataclass(frozen=True)
class _Key:
    """One key of a table, as `check` reads it from the class."""

    name: str
    hint: Any
    required: bool
    default: Any
    checks: tuple[Check, ...]
    label: str | None

    def check(self, where: str, value: Any, entry: Mapping[str, Any]) -> None:
        place = self.label or f"{where} {self.name}"
        hint = self.hint
        if get_origin(hint) in (Union, types.UnionType):  # ``X | None``
            if value is None:
                return
            (hint,) = (arg for arg in get_args(hint) if arg is not type(None))
        if not any(isinstance(item, OneOf) for item in self.checks):
            _check_type(place, hint, value)
        for item in self.checks:
            if problem := item(where, value, entry):
                raise TenantFileError(problem)
        if _is_table(hint):
            check(place, value, hint)
        elif get_origin(hint) is dict and _is_table(get_args(hint)[1]):
            for name, table in value.items():
                check(f"{place}.{name}", table, get_args(hint)[1])


def _check_type(place: str, hint: Any, value: Any) -> None:
    """The value's type: `AddressList` and ``list[str]`` hold non-empty strings; a table's keys are checked later."""
    if hint is AddressList:
        _check_type(place, list[str], value)
        try:
            parse_networks(value, what=f"{place} entry")
        except ValueError as exc:
            raise TenantFileError(str(exc)) from None
    elif get_origin(hint) is list:
        if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
            raise TenantFileError(f"{place}: expected a list of strings")
    elif hint is not Any and not _is_table(hint):
        if hint is float:
            right = isinstance(value, int | float)
        elif hint is int:
            right = isinstance(value, int) and not isinstance(value, bool)
        else:
            right = isinstance(value, get_origin(hint) or hint)
        if not right:
            raise TenantFileError(f"{place}: wrong type {type(value).__name__}")


def _is_table(hint: Any) -> bool:
    return isinstance(hint, type) and is_dataclass(hint)


_KEYS: dict[type[Any], dict[str, _Key]] = {}


def _keys(schema: type[Any]) -> dict[str, _Key]:
    """The keys of a table's class, read once."""
    if schema not in _KEYS:
        hints = get_type_hints(schema)
        _KEYS[schema] = {item.name: _key(item, hints[item.name]) for item in fields(schema)}
    return _KEYS[schema]


def _key(item: Field[Any], hint: Any) -> _Key:
    if item.default is not MISSING:
        required, default = False, item.default
    elif item.default_factory is not MISSING:
        required, default = False, item.default_factory()
    else:
        required, default = True, None
    return _Key(item.name, hint, required, default, item.metadata.get("checks", ()), item.metadata.get("label"))
