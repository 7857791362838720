"""The rules pipeline: load the configured rules once, run them in order during the exchange.

Failure modes and their answers (API.md §5, issue 5):

- ``api.access.deny(reason)``: 403 ``access_denied`` with the reason; later rules do not run.
- a rule raises, or runs longer than its timeout: 403 ``access_denied`` with a generic description; the exception
  (with the rule's name) goes to the log, not to the client.
- ``api.redirect.send_user_to(url)``: 403 ``interaction_required``: a password exchange cannot redirect.
- an invalid custom claim (not a URL namespace, or a registered claim): 403 ``access_denied`` naming the claim rule,
  since that is the rule author's error to fix.

A timed-out ``async`` rule is cancelled. A timed-out plain function runs in a worker thread that cannot be killed: its
result is ignored and the login fails; keep such rules short.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import importlib.util
import inspect
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

from identity.clock import Clock, SystemClock
from identity.oauth2.errors import AccessDenied, OAuthError
from identity.oauth2.interfaces import GrantResult, RuleOutcome
from identity.oauth2.policy import permitted_claims, permitted_scopes
from identity.oauth2.scopes import OIDC_SCOPES
from identity.rules.api import (
    AccessDeniedByRule,
    Event,
    EventAuthentication,
    EventClient,
    EventConnection,
    EventRequest,
    EventTransaction,
    EventUser,
    InvalidClaim,
    PostLoginApi,
    RedirectAttempted,
)

__all__ = ["InteractionRequired", "Rule", "RuleLoadError", "RulesEngine", "load_handler"]

logger = logging.getLogger("identity.rules")

RuleHandler = Callable[[Event, PostLoginApi], Awaitable[None] | None]
_GENERIC_FAILURE = "Access denied: a rule failed"


class InteractionRequired(OAuthError):
    """A rule tried to redirect during a password exchange (API.md §1.9, §5.1)."""

    error = "interaction_required"
    status_code = 403
    default_description = "Redirects are not possible in this flow"


class RuleLoadError(Exception):
    """A rule's handler cannot be imported or is not callable."""


@dataclass(frozen=True)
class Rule:
    """A loaded rule."""

    name: str
    handler: RuleHandler
    timeout: float = 5.0
    config: Mapping[str, Any] = field(default_factory=dict)


def load_handler(path: str) -> RuleHandler:
    """Import ``module:function`` or ``path/to/file.py:function``; `RuleLoadError` with a clear message otherwise."""
    module_name, sep, attribute = path.rpartition(":")
    if not sep or not module_name or not attribute:
        raise RuleLoadError(f"rule handler {path!r} must be written 'module:function' or 'file.py:function'")
    try:
        if module_name.endswith(".py"):
            module = _import_file(Path(module_name))
        else:
            module = importlib.import_module(module_name)
    except Exception as exc:  # any import failure must stop the start, with its reason
        raise RuleLoadError(f"rule handler {path!r}: cannot import {module_name!r}: {exc}") from exc
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise RuleLoadError(f"rule handler {path!r}: {module_name!r} has no callable {attribute!r}")
    return handler  # type: ignore[no-any-return]


def _import_file(path: Path) -> ModuleType:
    """Load a rules file by path (relative to the working directory), once per process."""
    resolved = path.resolve()
    name = "identity_rules_" + hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


class RulesEngine:
    """`identity.oauth2.interfaces.RulesPipeline` over a fixed, ordered list of rules."""

    def __init__(self, rules: Sequence[Rule], clock: Clock | None = None) -> None:
        self.rules = tuple(rules)
        self.clock = clock or SystemClock()

    async def run(
        self,
        result: GrantResult,
        *,
        protocol: str,
        requested_scopes: tuple[str, ...] | None,
        client_ip: str | None,
        user_agent: str | None,
        acr_values: tuple[str, ...] = (),
    ) -> RuleOutcome:
        """Run every rule in order; the outcome carries the claims, the scopes and the MFA demand.

        What the rules leave in ``api`` is re-checked, whether they used its methods or changed its lists and
        dictionaries directly: scopes are cut to what the API and the client allow (``offline_access`` only if the
        grant had it before the rules ran), claims to namespaced, unregistered names with JSON values. The
        ``app_metadata`` they set travels with the result and is saved only when tokens are issued.
        """
        if not self.rules:
            return RuleOutcome(result)
        allowed = frozenset((*(result.api.scopes if result.api else ()), *OIDC_SCOPES)) - {"offline_access"}
        api = PostLoginApi(result.scopes, allowed)
        base_event = _event(result, protocol, requested_scopes, client_ip, user_agent, self.clock.now(), acr_values)
        for rule in self.rules:
            event = replace(base_event, config=MappingProxyType(dict(rule.config)))
            await self._run_one(rule, event, api)
        changed = replace(
            result,
            scopes=_checked_scopes(api.access_token.scopes, result),
            access_claims={**result.access_claims, **permitted_claims(api.access_token.claims)},
            id_claims={**result.id_claims, **permitted_claims(api.id_token.claims)},
            app_metadata={**result.app_metadata, **_checked_metadata(api.user.app_metadata)},
        )
        return RuleOutcome(changed, mfa_required=bool(api.multifactor.enabled))

    async def _run_one(self, rule: Rule, event: Event, api: PostLoginApi) -> None:
        started = time.perf_counter()
        try:
            if inspect.iscoroutinefunction(rule.handler):
                await asyncio.wait_for(rule.handler(event, api), rule.timeout)
            else:
                outcome = await asyncio.wait_for(asyncio.to_thread(rule.handler, event, api), rule.timeout)
                if inspect.isawaitable(outcome):
                    await asyncio.wait_for(outcome, rule.timeout)
        except AccessDeniedByRule as denial:
            logger.info("rule %s denied access", rule.name)
            raise AccessDenied(str(denial) or "Access denied") from None
        except RedirectAttempted:
            logger.warning("rule %s tried to redirect during a password exchange", rule.name)
            raise InteractionRequired() from None
        except InvalidClaim as exc:
            logger.error("rule %s set an invalid claim: %s", rule.name, exc)
            raise AccessDenied(f"Rule '{rule.name}' set an invalid claim: {exc}") from None
        except TimeoutError:
            logger.error("rule %s timed out after %.1f s", rule.name, rule.timeout)
            raise AccessDenied(_GENERIC_FAILURE) from None
        except Exception:
            logger.exception("rule %s raised", rule.name)
            raise AccessDenied(_GENERIC_FAILURE) from None
        finally:
            logger.debug("rule %s ran in %.2f ms", rule.name, (time.perf_counter() - started) * 1000)
        # A rule that caught the exception of deny() or send_user_to() still denied.
        if api.access.denied is not None:
            raise AccessDenied(api.access.denied or "Access denied")
        if api.redirect.attempted:
            raise InteractionRequired()


def _checked_scopes(scopes: Any, result: GrantResult) -> tuple[str, ...]:
    """The rules' scopes within policy; ``offline_access`` stays only if the grant already had it."""
    if not isinstance(scopes, list | tuple):
        logger.warning("rules replaced the scope list with a %s: no scope granted", type(scopes).__name__)
        scopes = ()
    kept = permitted_scopes(scopes, result.client, result.api)
    return tuple(scope for scope in kept if scope != "offline_access" or scope in result.scopes)


def _checked_metadata(updates: Any) -> dict[str, Any]:
    """The ``app_metadata`` keys a rule set, if they are strings with JSON values (the column is JSON)."""
    if not isinstance(updates, Mapping):
        return {}
    kept: dict[str, Any] = {}
    for key, value in updates.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            logger.warning("rules set app_metadata key %r to a value that is not JSON: dropped", key)
            continue
        kept[str(key)] = value
    return kept


def _event(
    result: GrantResult,
    protocol: str,
    requested_scopes: tuple[str, ...] | None,
    client_ip: str | None,
    user_agent: str | None,
    now: float,
    acr_values: tuple[str, ...] = (),
) -> Event:
    user = result.user
    authenticated = int(result.authenticated(now))
    return Event(
        transaction=EventTransaction(
            protocol=protocol,
            requested_scopes=tuple(requested_scopes or ()),
            requested_audience=result.audience,
            acr_values=acr_values,
        ),
        client=EventClient(
            client_id=result.client.client_id,
            name=result.client.name,
            metadata=MappingProxyType(dict(result.client.metadata)),
        ),
        connection=EventConnection(name=result.connection.name, strategy=result.connection.strategy),
        user=EventUser(
            user_id=user.user_id,
            email=user.email,
            email_verified=user.email_verified,
            username=user.username,
            name=user.name,
            app_metadata=MappingProxyType(dict(user.app_metadata)),
            user_metadata=MappingProxyType(dict(user.user_metadata)),
            logins_count=user.logins_count,
        ),
        request=EventRequest(ip=client_ip, user_agent=user_agent),
        authentication=EventAuthentication(
            methods=tuple(MappingProxyType({"name": name, "timestamp": authenticated}) for name in result.amr)
        ),
    )
