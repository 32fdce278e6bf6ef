"""A paginator for the admin's big tables (members, orders, the points ledger and the other per-order/per-member logs).

Django's Paginator runs an exact `SELECT COUNT(*)` of the changelist's queryset on every page. On PostgreSQL that is a
full scan of millions of rows (MVCC: no cheap exact count), so a page of 50 rows would cost seconds. Instead, on
PostgreSQL the count of an unfiltered list comes from the planner's statistics when they are large:

- an unfiltered queryset: `pg_class.reltuples` of the model's table (kept fresh by ANALYZE/autovacuum);
- a filtered or searched one is counted exactly: the planner's estimate of a search (an OR over several columns)
  was seen off by six orders of magnitude, and an operator must see the true number of members a search found.

When the estimate is below ESTIMATE_THRESHOLD (or missing: a table never analysed) the exact count is cheap enough and
is used. Other databases (SQLite in development
and tests) always count exactly. An estimate may be off by a few percent: the last page links may then point a page
short of or past the real end; a page past the end shows Django's "out of range" handling as usual.
"""
from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property

ESTIMATE_THRESHOLD = 100_000


def estimated_row_count(queryset) -> int | None:
    """The PostgreSQL planner's estimate of the rows of an unfiltered `queryset`; None off PostgreSQL, for a filtered
    queryset, or when unknown."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    query = queryset.query
    with connection.cursor() as cursor:
        if not query.where and not query.distinct and not query.combinator:
            # reltuples is -1 for a table never analysed (PostgreSQL 14+): no estimate then.
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                [connection.ops.quote_name(queryset.model._meta.db_table)],
            )
            row = cursor.fetchone()
            return row[0] if row and row[0] >= 0 else None
    return None  # filtered: the exact count (an estimate of a search or filter can be off by orders of magnitude)


class EstimatedCountPaginator(Paginator):
    """Counts exactly on small results and off PostgreSQL; uses the planner's estimate for huge ones."""

    estimate_threshold = ESTIMATE_THRESHOLD

    @cached_property
    def count(self):
        if hasattr(self.object_list, "query"):
            estimate = estimated_row_count(self.object_list)
            if estimate is not None and estimate >= self.estimate_threshold:
                self.is_estimate = True
                return estimate
        self.is_estimate = False
        return super().count

    is_estimate = False
