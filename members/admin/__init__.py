"""The members app's admin, by area. Django's autodiscovery imports only this package, so it imports every module that
registers an admin, and re-exports the names other apps and tests import from `members.admin`.

- toolkit: the admin toolkit every app's admin builds on (read-only and single-row admins, filters, confirmed
  actions, the member column, the CSV download);
- member_page: the sections the apps above members add to the member page (LOYALTY_MEMBER_PAGE_SECTIONS);
- uploads: upload parsing and staging for the member and order imports;
- members: the member admin and its form, tags;
- orders: the order admin and its import views;
- operations: import runs, API keys, job runs and schedules;
- staff: staff users and roles in Unfold's skin;
- webhooks: webhook subscriptions and the delivery log (members.webhooks).
"""
from . import staff  # noqa: F401  (first: it swaps Django's and the API key library's admins before the others)
from .member_page import MemberPageSection, MemberPanel, member_page
from .members import MemberAdmin, MemberAdminForm, OrderInline, TagAdmin
from .operations import ApiKeyAdmin, ImportRunAdmin, JobRunAdmin, PeriodicTaskAdmin, import_failed_rows
from .orders import OrderAdmin
from .toolkit import (
    HISTORY_INLINE_ROWS,
    DayRangeFilter,
    DistinctValuesFilter,
    MemberColumnMixin,
    MemberHistoryInline,
    NothingToAskForm,
    ReadOnlyMixin,
    ReadOnlyModelAdmin,
    SingletonAdmin,
    ValuesDropdownFilter,
    confirmed_action,
    csv_response,
    member_header,
)
from .uploads import IMPORT_PERMISSION, ImportPermissionMixin, stage_order_upload, xlsx_rows
from .webhooks import WebhookDeliveryAdmin, WebhookSubscriptionAdmin

__all__ = [
    "WebhookDeliveryAdmin",
    "WebhookSubscriptionAdmin",
    "HISTORY_INLINE_ROWS",
    "IMPORT_PERMISSION",
    "ApiKeyAdmin",
    "DayRangeFilter",
    "DistinctValuesFilter",
    "ImportPermissionMixin",
    "ImportRunAdmin",
    "JobRunAdmin",
    "MemberAdmin",
    "MemberAdminForm",
    "MemberColumnMixin",
    "MemberHistoryInline",
    "MemberPageSection",
    "NothingToAskForm",
    "MemberPanel",
    "OrderAdmin",
    "OrderInline",
    "PeriodicTaskAdmin",
    "ReadOnlyMixin",
    "ReadOnlyModelAdmin",
    "SingletonAdmin",
    "TagAdmin",
    "ValuesDropdownFilter",
    "confirmed_action",
    "csv_response",
    "import_failed_rows",
    "member_header",
    "member_page",
    "stage_order_upload",
    "xlsx_rows",
]
