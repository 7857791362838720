"""Rules: operator code that runs during the password exchange (Auth0 Actions' post-login, in Python)."""

from identity.rules.api import Event, PostLoginApi
from identity.rules.pipeline import InteractionRequired, Rule, RuleLoadError, RulesEngine, load_handler

__all__ = ["Event", "InteractionRequired", "PostLoginApi", "Rule", "RuleLoadError", "RulesEngine", "load_handler"]
