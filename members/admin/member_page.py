"""The member page's sections: what the apps above members add to the member admin (history tables, list actions with
their permission checks, read-only panels), named in order by the setting LOYALTY_MEMBER_PAGE_SECTIONS.

The dependency direction forbids members from importing the apps above it, and letting their admin modules patch
MemberAdmin at import time made the page depend on the order of INSTALLED_APPS. Instead each app declares one
MemberPageSection in its admin module and the setting lists them, like LOYALTY_ORDER_HANDLERS: the whole page reads
top to bottom in one place. MemberAdmin reads the setting on first use (every admin module is loaded by then).
"""
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string


@dataclass(frozen=True)
class MemberPanel:
    """A read-only panel of the member page: `render(member)` returns its HTML, shown as a field named after the
    function at the end of the fieldset titled `fieldset`, labelled `description`."""

    fieldset: str
    description: str
    render: Callable

    @property
    def name(self) -> str:
        return self.render.__name__


@dataclass(frozen=True)
class MemberPageSection:
    """What one app adds to the member page.

    - inlines: read-only history tables (members.admin.MemberHistoryInline), after the page's own;
    - actions: member list actions (functions under `admin.action`), after the page's own;
    - permissions: {"name": check(request) -> bool}, asked as `MemberAdmin.has_<name>_permission` by the actions
      that name it in `permissions=[...]`;
    - panels: MemberPanel rows added to the page's fieldsets.
    """

    inlines: Sequence[type] = ()
    actions: Sequence[Callable] = ()
    permissions: Mapping[str, Callable] = field(default_factory=dict)
    panels: Sequence[MemberPanel] = ()


def member_page() -> MemberPageSection:
    """The sections of LOYALTY_MEMBER_PAGE_SECTIONS merged in the setting's order. Cached per value of the setting,
    so a test that reorders it sees the new order."""
    return _merged_sections(tuple(settings.LOYALTY_MEMBER_PAGE_SECTIONS))


@lru_cache(maxsize=8)
def _merged_sections(paths: tuple[str, ...]) -> MemberPageSection:
    sections = [import_string(path) for path in paths]
    permissions: dict[str, Callable] = {}
    for path, section in zip(paths, sections, strict=True):
        if not isinstance(section, MemberPageSection):
            raise ImproperlyConfigured(f"LOYALTY_MEMBER_PAGE_SECTIONS: {path} is not a MemberPageSection.")
        for name, check in section.permissions.items():
            if name in permissions:
                raise ImproperlyConfigured(f"LOYALTY_MEMBER_PAGE_SECTIONS: two sections check the permission {name!r}.")
            permissions[name] = check
    merged = MemberPageSection(
        inlines=tuple(inline for section in sections for inline in section.inlines),
        actions=tuple(action for section in sections for action in section.actions),
        permissions=permissions,
        panels=tuple(panel for section in sections for panel in section.panels),
    )
    for kind, names in (("action", [action.__name__ for action in merged.actions]),
                        ("panel", [panel.name for panel in merged.panels])):
        if len(set(names)) != len(names):
            raise ImproperlyConfigured(f"LOYALTY_MEMBER_PAGE_SECTIONS: two sections add the same {kind} ({names}).")
    return merged
