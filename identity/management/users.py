"""``/api/v2/users``, ``/users-by-email`` and MFA administration (API.md §6): parse, call the account services."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from litestar import Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from msgspec import UNSET, Meta, Struct, UnsetType
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.factors import Factor, FactorType, NotEnrolled
from identity.accounts.users import UserService
from identity.management import operations
from identity.management.audit import recorder
from identity.management.errors import ERROR_RESPONSES, ManagementError, bad_request, not_found
from identity.management.fields import check_user
from identity.management.paging import DEFAULT_PER_PAGE, Page, PerPage, one_page
from identity.store import users as user_queries
from identity.store.models import UserRow
from identity.web.deps import Services, build_factors
from identity.web.mfa import wire_time

__all__ = ["USER_HANDLERS", "UserOut", "parse_query"]

_TERM = re.compile(r'\s*(?:(AND)\s+|([A-Za-z_][A-Za-z0-9_.]*):("(?:[^"\\]|\\.)*"|[^\s"()]+))')


class Identity(Struct):
    """Where the user lives (Auth0's ``identities`` entry)."""

    connection: str
    user_id: str
    provider: str = "auth0"
    isSocial: bool = False


class UserOut(Struct):
    """A user as the Management API shows it (never a password hash)."""

    user_id: str
    email: str | None
    email_verified: bool
    username: str | None
    name: str | None
    given_name: str | None
    family_name: str | None
    nickname: str | None
    picture: str | None
    blocked: bool
    created_at: datetime
    updated_at: datetime
    last_login: datetime | None
    logins_count: int
    identities: list[Identity]
    app_metadata: dict[str, Any]
    user_metadata: dict[str, Any]
    multifactor: list[str] | UnsetType = UNSET


class UserPage(Struct):
    """A page of users with the total (``include_totals=true``)."""

    start: int
    limit: int
    length: int
    total: int
    users: list[UserOut]


class UserCreate(Struct, forbid_unknown_fields=True):
    """``POST /users``: ``connection`` and ``password`` are required, and an ``email`` or a ``username``.

    ``phone_number`` and ``phone_verified`` belong to SMS connections: refused unless empty (`fields.check_user`).
    """

    connection: str
    password: str | None = None
    email: str | None = None
    username: str | None = None
    user_id: str | None = None
    email_verified: bool = False
    verify_email: bool = False
    """Accepted for compatibility; identity sends no email."""
    blocked: bool = False
    name: str | None = None
    given_name: Annotated[str, Meta(min_length=1, max_length=150)] | None = None
    family_name: Annotated[str, Meta(min_length=1, max_length=150)] | None = None
    nickname: str | None = None
    picture: str | None = None
    app_metadata: dict[str, Any] = {}
    user_metadata: dict[str, Any] = {}
    phone_number: str | UnsetType | None = UNSET
    phone_verified: bool | UnsetType = UNSET


class UserPatch(Struct, forbid_unknown_fields=True):
    """``PATCH /users/{id}``: only the members sent change; metadata is merged key by key (``null`` removes)."""

    blocked: bool | UnsetType = UNSET
    password: str | UnsetType = UNSET
    connection: str | UnsetType = UNSET
    """Sent with ``password`` by Auth0's SDKs; must be the user's connection."""
    email: str | UnsetType = UNSET
    username: str | UnsetType | None = UNSET
    email_verified: bool | UnsetType = UNSET
    verify_email: bool | UnsetType = UNSET
    name: str | UnsetType | None = UNSET
    given_name: Annotated[str, Meta(min_length=1, max_length=150)] | UnsetType | None = UNSET
    family_name: Annotated[str, Meta(min_length=1, max_length=150)] | UnsetType | None = UNSET
    nickname: str | UnsetType | None = UNSET
    picture: str | UnsetType | None = UNSET
    app_metadata: dict[str, Any] | UnsetType | None = UNSET
    user_metadata: dict[str, Any] | UnsetType | None = UNSET
    phone_number: str | UnsetType | None = UNSET
    phone_verified: bool | UnsetType = UNSET


class AuthenticationMethod(Struct):
    """A second factor of the user (Auth0's authentication method)."""

    id: str
    type: str
    confirmed: bool
    created_at: datetime
    enrolled_at: datetime | None = None


class Enrollment(Struct):
    """A Guardian enrollment (the older view of the same factors)."""

    id: str
    status: str
    type: str
    enrolled_at: str | None = None


class RecoveryCode(Struct):
    """A new recovery code, shown once."""

    recovery_code: str


_NOT_STORED = ("connection", "verify_email", "phone_number", "phone_verified")
"""Members of a PATCH body that name no stored change (``phone_*`` only as in force: none)."""


def user_out(row: UserRow, connection: str, *, multifactor: list[str] | None = None) -> UserOut:
    """The Management API's view of a user row."""
    return UserOut(
        user_id=row.user_id,
        email=row.email,
        email_verified=row.email_verified,
        username=row.username,
        name=row.name,
        given_name=row.given_name,
        family_name=row.family_name,
        nickname=row.nickname,
        picture=row.picture,
        blocked=row.blocked,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_login=row.last_login,
        logins_count=row.logins_count,
        identities=[Identity(connection=connection, user_id=row.user_id.partition("|")[2] or row.user_id)],
        app_metadata=dict(row.app_metadata),
        user_metadata=dict(row.user_metadata),
        multifactor=multifactor if multifactor is not None else UNSET,
    )


def _bad_query(message: str, field: str) -> ManagementError:
    return bad_request(f"Query validation error: '{message}' on property {field}.", "invalid_query_string")


def parse_query(q: str) -> list[user_queries.SearchTerm]:
    """The terms of a Lucene-style ``q`` (``field:value`` or ``field:"value"``, joined by spaces or ``AND``)."""
    terms: list[user_queries.SearchTerm] = []
    position = 0
    text = q.strip()
    while position < len(text):
        match = _TERM.match(text, position)
        if match is None or match.end() == position:
            raise bad_request(
                f"Query validation error: 'q: cannot read the query at {text[position:][:40]!r}; "
                "use field:value terms joined by AND' on property q.",
                "invalid_query_string",
            )
        position = match.end()
        if match.group(1):
            continue
        field, value = match.group(2), match.group(3)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        if not (
            field in user_queries.SEARCH_FIELDS
            or field == "identities.connection"
            or re.fullmatch(r"(app|user)_metadata\.[A-Za-z0-9_\-]{1,64}", field)
        ):
            raise bad_request(
                f"Query validation error: 'q: cannot search on {field}' on property q.", "invalid_query_string"
            )
        if field in ("blocked", "email_verified") and value not in ("true", "false"):
            raise bad_request(
                f"Query validation error: 'q: {field} is true or false' on property q.", "invalid_query_string"
            )
        terms.append(user_queries.SearchTerm(field, value))
    return terms


def _sort(sort: str | None) -> tuple[str, bool] | None:
    if sort is None:
        return None
    field, _, order = sort.partition(":")
    if field not in user_queries.SORT_FIELDS or order not in ("1", "-1"):
        raise bad_request(
            f"Query validation error: 'sort must be field:1 or field:-1 with a field among "
            f"{', '.join(user_queries.SORT_FIELDS)}' on property sort.",
            "invalid_query_string",
        )
    return field, order == "-1"


def paging(page: int, per_page: int) -> tuple[int, int]:
    """Offset and limit of a page (both already range-checked)."""
    return page * per_page, per_page


@get("/users", responses=ERROR_RESPONSES, opt={"scope": "read:users"}, summary="Search users")
async def list_users(
    db: NamedDependency[AsyncSession],
    page: Page = 0,
    per_page: PerPage = DEFAULT_PER_PAGE,
    include_totals: FromQuery[bool] = False,
    q: FromQuery[str | None] = None,
    sort: FromQuery[str | None] = None,
    connection: FromQuery[str | None] = None,
    search_engine: Annotated[str | None, QueryParameter(pattern="^v[123]$")] = None,
    fields: FromQuery[str | None] = None,
    include_fields: FromQuery[bool] = True,
    primary_order: FromQuery[bool] = True,
) -> list[UserOut] | UserPage:
    """Users matching ``q`` (and ``connection``), sorted, one page at a time."""
    if fields:
        raise bad_request(
            "Query validation error: 'fields is not supported' on property fields.", "invalid_query_string"
        )
    terms = parse_query(q) if q else []
    if connection is not None:
        terms.append(user_queries.SearchTerm("identities.connection", connection))
    offset, limit = paging(page, per_page)
    found, total = await user_queries.search(
        db, terms, sort=_sort(sort), offset=offset, limit=limit, with_total=include_totals
    )
    await db.commit()
    users = [user_out(row, name) for row, name in found]
    if include_totals:
        return UserPage(start=offset, limit=limit, length=len(users), total=total or 0, users=users)
    return users


@get(
    "/users-by-email",
    responses=ERROR_RESPONSES,
    opt={"scope": "read:users"},
    summary="Users with an email, in every connection",
)
async def users_by_email(
    db: NamedDependency[AsyncSession], email: Annotated[str, QueryParameter(min_length=1)]
) -> list[UserOut]:
    """Every user with this email (case-insensitive)."""
    found = await user_queries.by_email(db, email)
    await db.commit()
    return [user_out(row, name) for row, name in found]


@post("/users", responses=ERROR_RESPONSES, opt={"scope": "create:users"}, status_code=201, summary="Create a user")
async def create_user(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], data: JSONBody[UserCreate]
) -> UserOut:
    """A new user in a database connection."""
    if data.password is None:
        raise bad_request("Payload validation error: 'Missing required property: password' on property password.")
    check_user({"phone_number": data.phone_number, "phone_verified": data.phone_verified})
    row, connection = await UserService(db, services.hasher, services.clock).create(
        data.connection,
        password=data.password,
        email=data.email,
        username=data.username,
        email_verified=data.email_verified,
        blocked=data.blocked,
        name=data.name,
        given_name=data.given_name,
        family_name=data.family_name,
        nickname=data.nickname,
        picture=data.picture,
        user_id=data.user_id,
        app_metadata=data.app_metadata,
        user_metadata=data.user_metadata,
    )
    return user_out(row, connection)


@get("/users/{user_id:str}", responses=ERROR_RESPONSES, opt={"scope": "read:users"}, summary="Get a user")
async def get_user(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], user_id: FromPath[str]
) -> UserOut:
    """One user, with ``multifactor`` when an authenticator is enrolled."""
    row, connection = await UserService(db, services.hasher, services.clock).get(user_id)
    enrolled = await build_factors(services, db).authenticators.has_active(user_id)
    return user_out(row, connection, multifactor=["guardian"] if enrolled else [])


@patch("/users/{user_id:str}", responses=ERROR_RESPONSES, opt={"scope": "update:users"}, summary="Update a user")
async def update_user(
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    user_id: FromPath[str],
    data: JSONBody[UserPatch],
) -> UserOut:
    """Block, change the password, email, profile or metadata. A new password or a block ends the user's sessions."""
    check_user({"phone_number": data.phone_number, "phone_verified": data.phone_verified})
    changes = {
        name: getattr(data, name)
        for name in UserPatch.__struct_fields__
        if getattr(data, name) is not UNSET and name not in _NOT_STORED
    }
    in_force_only = data.phone_number is not UNSET or data.phone_verified is not UNSET
    if not changes and not in_force_only:
        raise bad_request("Payload validation error: 'the body changes nothing'.")
    service = UserService(db, services.hasher, services.clock)
    row, connection = await service.get(user_id)
    if data.connection is not UNSET and data.connection != connection:
        raise bad_request("Payload validation error: 'connection is not the user's connection' on property connection.")
    if "email" in changes and changes["email"] is None:
        raise bad_request("Payload validation error: 'email cannot be null' on property email.")
    if changes:
        row, connection = await service.update(user_id, changes)
    return user_out(row, connection)


@delete(
    "/users/{user_id:str}",
    responses=ERROR_RESPONSES,
    opt={"scope": "delete:users"},
    status_code=204,
    summary="Delete a user",
)
async def delete_user(
    request: Request[Any, Any, Any],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    user_id: FromPath[str],
) -> None:
    """Delete the user with its factors and sessions (logged as ``sdu``)."""
    await operations.delete_user(UserService(db, services.hasher, services.clock), user_id, recorder(services, request))


_METHOD_TYPES = {FactorType.TOTP: "totp", FactorType.EMAIL: "email", FactorType.RECOVERY_CODE: "recovery-code"}


def _method(factor: Factor) -> AuthenticationMethod:
    """A factor by Auth0's authentication-method names: a synced passkey, or a (roaming) security key."""
    kind = _METHOD_TYPES.get(factor.type) or ("passkey" if factor.synced else "webauthn-roaming")
    return AuthenticationMethod(
        id=factor.id, type=kind, confirmed=factor.active, created_at=factor.created_at, enrolled_at=factor.confirmed_at
    )


async def _methods(services: Services, db: AsyncSession, user_id: str) -> list[AuthenticationMethod]:
    """The user's factors by Auth0's names, the recovery code first."""
    return [_method(f) for f in await build_factors(services, db).authenticators.listed(user_id)]


@get(
    "/users/{user_id:str}/authentication-methods",
    responses=ERROR_RESPONSES,
    opt={"scope": ("read:authentication_methods", "read:users")},
    summary="A user's second factors",
)
async def list_authentication_methods(
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    user_id: FromPath[str],
    page: Page = 0,
    per_page: PerPage = DEFAULT_PER_PAGE,
    include_totals: FromQuery[bool] = False,
) -> list[AuthenticationMethod] | dict[str, Any]:
    """The user's authenticators and recovery code, a page at a time."""
    methods = await _methods(services, db, user_id)
    return one_page("authenticators", methods, page, per_page, include_totals)


@get(
    "/users/{user_id:str}/authentication-methods/{method_id:str}",
    responses=ERROR_RESPONSES,
    opt={"scope": "read:authentication_methods"},
    summary="One of a user's second factors",
)
async def get_authentication_method(
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    user_id: FromPath[str],
    method_id: FromPath[str],
) -> AuthenticationMethod:
    """One authenticator or the recovery code, by the id the list shows."""
    methods = await _methods(services, db, user_id)
    for method in methods:
        if method.id == method_id:
            return method
    raise not_found("The authentication method does not exist.", "inexistent_authentication_method")


@post(
    "/users/{user_id:str}/multifactor/actions/invalidate-remember-browser",
    responses=ERROR_RESPONSES,
    opt={"scope": "update:users"},
    status_code=204,
    summary="Forget the browsers that skip MFA (none: identity remembers no browser)",
)
async def invalidate_remember_browser(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], user_id: FromPath[str]
) -> None:
    """Done as soon as asked: identity has no "remember this browser", so no login of the user ever skips MFA.

    Accepted (204, as Auth0 answers) rather than refused, because support scripts call it right after an MFA
    reset; the user must exist.
    """
    await UserService(db, services.hasher, services.clock).get(user_id)
    await db.commit()


@get(
    "/users/{user_id:str}/enrollments",
    responses=ERROR_RESPONSES,
    opt={"scope": "read:users"},
    summary="A user's Guardian enrollments",
)
async def list_enrollments(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], user_id: FromPath[str]
) -> list[Enrollment]:
    """The user's confirmed authenticators, in Guardian's older shape."""
    listed = await build_factors(services, db).authenticators.listed(user_id)
    return [
        Enrollment(id=f.id, status="confirmed", type="authenticator", enrolled_at=wire_time(f.created_at))
        for f in listed
        if f.type is FactorType.TOTP and f.active
    ]


@delete(
    "/users/{user_id:str}/authentication-methods",
    responses=ERROR_RESPONSES,
    opt={"scope": "delete:authentication_methods"},
    status_code=204,
    summary="Reset MFA: delete every second factor",
)
async def delete_authentication_methods(
    request: Request[Any, Any, Any],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    user_id: FromPath[str],
) -> None:
    """Remove every factor and end the user's sessions (lost device); logged as ``gd_unenroll``."""
    await operations.reset_mfa(build_factors(services, db), user_id, recorder(services, request))


@delete(
    "/users/{user_id:str}/authenticators",
    responses=ERROR_RESPONSES,
    opt={"scope": "delete:guardian_enrollments"},
    status_code=204,
    summary="Reset MFA (older endpoint)",
)
async def delete_authenticators(
    request: Request[Any, Any, Any],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    user_id: FromPath[str],
) -> None:
    """The same MFA reset as ``DELETE /users/{id}/authentication-methods``."""
    await operations.reset_mfa(build_factors(services, db), user_id, recorder(services, request))


@delete(
    "/users/{user_id:str}/authentication-methods/{method_id:str}",
    responses=ERROR_RESPONSES,
    opt={"scope": "delete:authentication_methods"},
    status_code=204,
    summary="Delete one second factor",
)
async def delete_authentication_method(
    request: Request[Any, Any, Any],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    user_id: FromPath[str],
    method_id: FromPath[str],
) -> None:
    """Remove one factor (logged as ``gd_unenroll``); with the last authenticator the recovery code goes too."""
    if not await operations.remove_factor(build_factors(services, db), user_id, method_id, recorder(services, request)):
        raise not_found("The authentication method does not exist.", "inexistent_authentication_method")


@delete(
    "/guardian/enrollments/{enrollment_id:str}",
    opt={"scope": "delete:guardian_enrollments"},
    responses=ERROR_RESPONSES,
    status_code=204,
    summary="Delete one Guardian enrollment",
)
async def delete_enrollment(
    request: Request[Any, Any, Any],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    enrollment_id: FromPath[str],
) -> None:
    """Remove one authenticator by its enrollment id (as listed by ``/users/{id}/enrollments``)."""
    factors = build_factors(services, db)
    user_id = await factors.authenticators.owner(enrollment_id)
    record = recorder(services, request)
    if user_id is None or not await operations.remove_factor(factors, user_id, enrollment_id, record):
        raise not_found("The enrollment does not exist.", "inexistent_enrollment")


@post(
    "/users/{user_id:str}/recovery-code-regeneration",
    responses=ERROR_RESPONSES,
    opt={"scope": "update:users"},
    status_code=200,
    summary="A new recovery code",
)
async def regenerate_recovery_code(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], user_id: FromPath[str]
) -> RecoveryCode:
    """Replace the user's recovery code; the old one stops working."""
    try:
        code = await build_factors(services, db).recovery.regenerate(user_id)
    except NotEnrolled:
        raise ManagementError(400, "The user has no enrolled factor", "user_not_enrolled") from None
    return RecoveryCode(recovery_code=code)


USER_HANDLERS = [
    list_users,
    users_by_email,
    create_user,
    get_user,
    update_user,
    delete_user,
    list_authentication_methods,
    get_authentication_method,
    invalidate_remember_browser,
    list_enrollments,
    delete_authentication_methods,
    delete_authenticators,
    delete_authentication_method,
    delete_enrollment,
    regenerate_recovery_code,
]
