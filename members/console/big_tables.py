"""The admin's big tables: members (millions of rows), orders and the points ledger (tens of millions), redemptions.

A changelist of ten million rows stays fast on PostgreSQL (bench/admin measures it) because every page does a bounded
amount of work, whatever the table's size:

- **Counts** (BigTablePaginator): an unfiltered list takes the planner's estimate of the table's rows; a filtered or
  searched list is counted exactly up to COUNT_LIMIT rows (a COUNT over a LIMIT, so it stops there) and says "more
  than COUNT_LIMIT" beyond. Pages are numbered up to COUNT_LIMIT rows: OFFSET n reads n rows, so page 100,000 of the
  ledger would take seconds; the operator narrows the list or reverses the sort instead.
- **Ordering** (BigTableChangeList): Django breaks ties with `-pk`; here the primary key follows the direction of
  the sorted column, so one (column, id) index serves both directions without sorting. Only columns with such an
  index are sortable (each admin's `sortable_by`).
- **No facets and no date hierarchy**: both aggregate the whole table on every page. Dates are filtered with range
  filters, which the date indexes serve.
- **Searches on the member** of an order, a ledger entry or a redemption (`member_search_fields`) find the members
  first, then their rows through the (member, date) index: a join with an OR across two tables can only be scanned.
- **A range filter orders the list by its own column** (`range_orderings`) unless the operator sorted: filtering
  the ledger on an expiry window while walking it by creation date read millions of rows when the matches were old
  (19 s in bench/admin); the range's own index returns them in order.
- **Dropdowns of a column's values** (DistinctValuesFilter) read them with a skip scan of the column's index.
- **Column headers once per page** (unfold_headers_once): Unfold 0.91 builds every column's header again for each
  row, a fifth of a list page's rendering.
"""
import math
from functools import reduce
from operator import or_

from django.contrib import admin
from django.contrib.admin.views.main import ORDER_VAR
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import OrderBy, Q
from django.utils.functional import cached_property
from unfold.views import ChangeList

from members.phones import phone_search_spellings

# An exact count stops here: counting 10,000 rows costs a few milliseconds, counting millions costs seconds.
COUNT_LIMIT = 10_000
# Below this many rows (by the planner's statistics) an unfiltered list is counted exactly.
ESTIMATE_THRESHOLD = 100_000


def estimated_row_count(queryset) -> int | None:
    """The PostgreSQL planner's estimate of the rows of an unfiltered `queryset`; None off PostgreSQL, for a filtered
    queryset, or when unknown (a table never analysed)."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    query = queryset.query
    if query.where or query.distinct or query.combinator:
        return None  # the planner's estimate of a search can be off by orders of magnitude: counted (boundedly)
    with connection.cursor() as cursor:
        # reltuples is -1 for a table never analysed (PostgreSQL 14+): no estimate then.
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
            [connection.ops.quote_name(queryset.model._meta.db_table)],
        )
        row = cursor.fetchone()
    return row[0] if row and row[0] >= 0 else None


class BigTablePaginator(Paginator):
    """The count of a big changelist: estimated when unfiltered and huge, exact up to `count_limit` otherwise, and
    "more than `count_limit`" beyond. `is_estimate` and `is_lower_bound` say which; pages stop at `count_limit` rows
    when the count is not exact."""

    template_name = "admin/big_table_pagination.html"  # Unfold's pagination include, saying "about" / "more than"
    count_limit = COUNT_LIMIT
    estimate_threshold = ESTIMATE_THRESHOLD
    is_estimate = False
    is_lower_bound = False

    @cached_property
    def count(self):
        queryset = self.object_list
        if not hasattr(queryset, "query"):
            return super().count
        estimate = estimated_row_count(queryset)
        if estimate is not None and estimate >= self.estimate_threshold:
            self.is_estimate = True
            return estimate
        # A COUNT over a LIMIT: it stops at the limit however many rows the filter matches.
        bounded = queryset.order_by()[: self.count_limit + 1].count()
        if bounded > self.count_limit:
            self.is_lower_bound = True
        return bounded

    @property
    def is_exact(self) -> bool:
        return not (self.is_estimate or self.is_lower_bound)

    @cached_property
    def num_pages(self):
        pages = super().num_pages
        if self.count and not (self.is_estimate or self.is_lower_bound):
            return pages
        # Browsable by number up to count_limit rows (the OFFSET of a deeper page reads every row before it).
        return max(1, min(pages, math.ceil(self.count_limit / self.per_page)))

    @property
    def browsable_rows(self) -> int:
        return min(self.count, self.num_pages * self.per_page)


class BigTableChangeList(ChangeList):
    """Unfold's changelist whose tie-breaking primary key runs in the direction of the first sorted column, so a
    (column, id) index is read in one direction instead of sorting the ties (a million members with 0 orders)."""

    def _get_default_ordering(self):
        # The header's sort marks follow the order the list really has: a range filter's (BigTableAdminMixin).
        return self.model_admin.range_ordering(self.params) or super()._get_default_ordering()

    def _get_deterministic_ordering(self, ordering):
        ordering = super()._get_deterministic_ordering(ordering)
        if len(ordering) >= 2 and ordering[-1] == "-pk" and _ascending(ordering[0]):
            ordering[-1] = "pk"
        return ordering


def _ascending(part) -> bool:
    if isinstance(part, str):
        return not part.startswith("-")
    if isinstance(part, OrderBy):
        return not part.descending
    return False


class BigTableAdminMixin:
    """For a ModelAdmin of a table with millions of rows; see the module's docstring.

    `member_search_fields`: lookups on the row's member (e.g. "external_id__exact", "email__iexact") that a search
    also matches; the members are found first, at most `member_search_limit` of them."""

    paginator = BigTablePaginator
    show_full_result_count = False  # a second, unfiltered count
    show_facets = admin.ShowFacets.NEVER  # a count per filter value of the whole table
    date_hierarchy = None  # a DISTINCT over the dates of the whole table
    list_per_page = 50
    member_search_fields: tuple[str, ...] = ()
    member_search_limit = 100
    # {range filter's field: the ordering it gives the list}, e.g. {"expires_at": "expires_at"}.
    range_orderings: dict[str, str] = {}

    def get_changelist(self, request, **kwargs):
        return BigTableChangeList

    def get_ordering(self, request):
        return self.range_ordering(request.GET) or super().get_ordering(request)

    def range_ordering(self, params) -> tuple[str, ...]:
        """The ordering a range filter in `params` (the query string) gives the list, unless the operator sorted."""
        if ORDER_VAR not in params:
            for field_name, ordering in self.range_orderings.items():
                if params.get(f"{field_name}_from") or params.get(f"{field_name}_to"):
                    return (ordering,)
        return ()

    def get_search_results(self, request, queryset, search_term):
        if not self.member_search_fields:
            return super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if not term:
            return queryset, False
        # Own columns: exact lookups, each served by its index (a "member__..." one only shows the search box: the
        # member lookups below replace it).
        own = [Q(**{lookup: term}) for lookup in self.search_fields if not lookup.startswith("member__")]
        condition = reduce(or_, own) if own else None
        member_field = queryset.model._meta.get_field("member")
        member_lookups = [Q(**{lookup: term}) for lookup in self.member_search_fields]
        phones = phone_search_spellings(term) if "phone__exact" in self.member_search_fields else None
        if phones:  # a phone in any common spelling finds the member stored in E.164 (members.phones)
            member_lookups.append(Q(phone__in=phones))
        members = member_field.related_model._default_manager.filter(reduce(or_, member_lookups))
        member_ids = list(members.values_list("pk", flat=True)[: self.member_search_limit])
        if not member_ids:
            return (queryset.filter(condition) if condition is not None else queryset.none()), False
        if condition is None or not queryset.filter(condition).exists():
            # Only members matched: their rows straight from the (member, date) index, in the list's order. An OR
            # with the own columns would gather all of a busy member's rows before sorting them.
            return queryset.filter(member_id__in=member_ids), False
        return queryset.filter(condition | Q(member_id__in=member_ids)), False


def distinct_column_values(queryset, column: str, limit: int) -> list[str]:
    """The non-empty values of `column`, sorted, at most `limit`. On PostgreSQL a skip scan of an index led by the
    column (a recursive query that jumps from one value to the next: one index probe per value, not a read of
    millions of rows); elsewhere a plain DISTINCT."""
    model = queryset.model
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return list(
            queryset.exclude(**{column: ""}).order_by(column).values_list(column, flat=True).distinct()[:limit]
        )
    table = connection.ops.quote_name(model._meta.db_table)
    name = connection.ops.quote_name(model._meta.get_field(column).column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH RECURSIVE value_list(value) AS (
                (SELECT {name} FROM {table} WHERE {name} > '' ORDER BY {name} LIMIT 1)
                UNION ALL
                SELECT (SELECT {name} FROM {table} WHERE {name} > value_list.value ORDER BY {name} LIMIT 1)
                FROM value_list WHERE value_list.value IS NOT NULL
            )
            SELECT value FROM value_list WHERE value IS NOT NULL LIMIT %s
            """,
            [limit],
        )
        return [row[0] for row in cursor.fetchall()]


def unfold_headers_once() -> None:
    """Make Unfold's changelist rows share one computation of the column headers per changelist.

    `unfold.templatetags.unfold_list.items_for_result` calls `result_headers(cl)` for every row, so a page of 50 rows
    and 8 columns built 400 headers (each resolving the column's label and sort state) instead of 8. The headers
    depend only on the changelist, and Unfold only reads them, so they are kept on `cl`. Installed once, by the
    console app's ready(); checked by tests/admin/test_big_tables.py against the pinned Unfold version."""
    from unfold.templatetags import unfold_list

    original = unfold_list.result_headers
    if getattr(original, "once_per_changelist", False):
        return

    def result_headers(cl):
        headers = getattr(cl, "_unfold_result_headers", None)
        if headers is None:
            headers = cl._unfold_result_headers = list(result_headers.original(cl))
        return iter(headers)

    result_headers.once_per_changelist = True
    result_headers.original = original
    unfold_list.result_headers = result_headers

