"""Member row locks: the one way every write takes them.

Every balance change locks the member's row inside its transaction; writers of several members lock them in
primary-key order, so two transactions can never wait on each other in a cycle (no deadlock between a nightly batch
and an order, or between two batches). Every member lock is FOR NO KEY UPDATE (no write here changes a member's key):
it excludes other writers but not the KEY SHARE lock a foreign-key check takes. A plain FOR UPDATE would also block
the check of Member.referred_by that PostgreSQL runs when a referee's row is updated, and a job locking the referrer,
then the referee, would deadlock with the referee's order. On SQLite (one writer at a time) the lock is a no-op."""
from collections.abc import Iterable

from django.db.models import QuerySet

from .models import Member


def member_lock(member: Member) -> Member:
    """Lock the member's row for the rest of the transaction and reload it, so balances read are current."""
    member.refresh_from_db(from_queryset=Member.objects.select_for_update(no_key=True))
    return member


def members_lock(member_ids: Iterable[int], *, queryset: QuerySet | None = None) -> QuerySet:
    """The members `member_ids`, locked in primary-key order for the rest of the transaction (lazily: the locks are
    taken when the queryset is evaluated). `queryset` narrows or widens what is read (select_related, only); only the
    members' own rows are locked, never a joined table's. A `range` of ids (step 1) is read as a range, not a list:
    the nightly batches lock tens of thousands of members at a time."""
    base = Member.objects.all() if queryset is None else queryset
    if isinstance(member_ids, range) and member_ids.step == 1:
        chosen = base.filter(pk__gte=member_ids.start, pk__lt=member_ids.stop)
    else:
        chosen = base.filter(pk__in=list(member_ids))
    return chosen.select_for_update(of=("self",), no_key=True).order_by("pk")


def members_lock_sql(member_ids_sql: str) -> str:
    """The same lock for set-based SQL writers (the import backfill): a statement that locks, in primary-key order,
    the members whose ids the subquery `member_ids_sql` selects, and answers how many it locked. PostgreSQL only;
    SQLite has no row locks (one writer at a time)."""
    return (
        f"SELECT count(*) FROM (SELECT 1 FROM members_member WHERE id IN ({member_ids_sql}) "
        f"ORDER BY id FOR NO KEY UPDATE) locked"
    )
