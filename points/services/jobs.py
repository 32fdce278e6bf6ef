"""The scheduled work on lots: expire what remains of every lot whose expiry has come, and release pending lots
whose return window has passed. Batched by member id, each batch one transaction under its members' locks (primary-
key order); the set-based work itself is the ledger kernel's (points.ledger). The Celery tasks (points.tasks) and the
management commands call these."""
from datetime import datetime
from uuid import uuid4

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from members.locking import members_lock

from ..ledger import LotsJobResult, lots_expire, lots_expiry_due, lots_release, lots_release_due
from ..models import PointsTransaction


def points_expire_due(
    *, now: datetime | None = None, batch_members: int = 500, after: int = 0, on_batch=None
) -> LotsJobResult:
    """Turn what remains of every lot whose expiry has come into EXPIRE debits (one per member and run, traced to
    each lot). Batched by member id, five set-based statements a batch and no Python object per lot, so time grows
    linearly and memory stays flat however many lots there are. Running it twice, or twice at once, changes nothing
    more: each batch works under its members' locks, and an expired lot has nothing left.

    `after` skips members with an id up to it (a resumed job); `on_batch(last_member_id, batch_result)` is called
    inside each batch's transaction, so what it records (a job's cursor) commits together with the batch."""
    now = now or timezone.now()
    run = uuid4().hex[:12]
    return _lots_job(
        due=lots_expiry_due(now),
        apply=lambda member_ids: lots_expire(member_ids, now=now, run=run),
        batch_members=batch_members,
        after=after,
        on_batch=on_batch,
    )


def points_release_due(
    *, now: datetime | None = None, batch_members: int = 500, after: int = 0, on_batch=None
) -> LotsJobResult:
    """Release pending lots whose return window has passed: their points become available. `after` and `on_batch`
    as for points_expire_due."""
    now = now or timezone.now()
    return _lots_job(
        due=lots_release_due(now),
        apply=lambda member_ids: lots_release(member_ids, now=now),
        batch_members=batch_members,
        after=after,
        on_batch=on_batch,
    )


def _lots_job(*, due: Q, apply, batch_members: int, after: int = 0, on_batch=None) -> LotsJobResult:
    result = LotsJobResult()
    while True:
        with transaction.atomic():
            member_ids = list(
                PointsTransaction.objects.filter(due, member_id__gt=after)
                .order_by("member_id")
                .values_list("member_id", flat=True)
                .distinct()[:batch_members]
            )
            if not member_ids:
                return result
            # Every writer of a member's lots holds the member's lock first: locking the members is enough.
            list(members_lock(member_ids).values_list("pk"))
            batch = apply(member_ids)
            result.members += batch.members
            result.lots += batch.lots
            result.points += batch.points
            after = member_ids[-1]
            if on_batch is not None:
                on_batch(after, batch)
