"""A settable clock for tests: every service reads the time through django.utils.timezone.now."""
from contextlib import contextmanager
from unittest import mock


class Clock:
    """A settable `timezone.now`: set `clock.now` to move time."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@contextmanager
def frozen_clock(now):
    """Patch django.utils.timezone.now with a Clock starting at `now`; yields the clock."""
    clock = Clock(now)
    with mock.patch("django.utils.timezone.now", clock):
        yield clock
