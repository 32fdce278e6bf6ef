"""How the lowest app reaches the ones above it without importing them: the ordered handler settings
(`configured_hooks`) and the history-import flag (`history_importing`) the handlers read.

They live here, below `services`, `selectors`, `privacy` and the webhooks, because all of those use them: kept in
`members.services` they made the modules that services itself imports (the webhooks) import services back.
`members.services` re-exports every name, the path other apps and the tests use.
"""
import contextvars
from contextlib import contextmanager
from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

_IMPORTING_HISTORY = contextvars.ContextVar("loyalty_importing_history", default=False)


@contextmanager
def history_importing():
    """Within it, writes bring over the past (an import of members, orders or balances): the handlers still run,
    so the data ends as the live path leaves it, but nothing tells members about it: no message is queued and no
    welcome or referral gift is granted (see `is_history_import`). What happened in the past is not news."""
    token = _IMPORTING_HISTORY.set(True)
    try:
        yield
    finally:
        _IMPORTING_HISTORY.reset(token)


def is_history_import() -> bool:
    """True inside `history_importing()`: handlers that notify or reward members for something new skip."""
    return _IMPORTING_HISTORY.get()


@cache
def configured_hooks(setting_name: str) -> tuple:
    """The functions named in a LOYALTY_*_HANDLERS / *_SECTIONS setting, imported once, in their order."""
    return tuple(import_string(path) for path in getattr(settings, setting_name))


def configured_hooks_forget(setting, **kwargs) -> None:
    """setting_changed receiver (members.apps): a test that overrides a LOYALTY_* list must see the change."""
    if setting.startswith("LOYALTY_"):
        configured_hooks.cache_clear()
