"""The database itself refuses to rewrite ledger history; only a lot's `remaining` may change. Both databases:
PostgreSQL and SQLite (the local demo) carry the same guard (points/migrations 0002, 0004, 0008)."""
import pytest
from django.db import IntegrityError, connection, transaction

from points.models import PointsAllocation, PointsTransaction
from points.services import points_adjust, points_earn

pytestmark = pytest.mark.django_db


@pytest.fixture
def lot(member):
    return points_earn(member=member, amount=100, idempotency_key="lot-1")[0]


def test_changing_the_amount_of_a_transaction_is_refused(lot):
    with pytest.raises(IntegrityError), transaction.atomic():
        PointsTransaction.objects.filter(pk=lot.pk).update(amount=1000)


def test_changing_remaining_of_a_lot_is_allowed(lot):
    PointsTransaction.objects.filter(pk=lot.pk).update(remaining=40)

    lot.refresh_from_db()
    assert lot.remaining == 40


def test_deleting_a_transaction_is_refused(lot):
    with pytest.raises(IntegrityError), transaction.atomic():
        PointsTransaction.objects.filter(pk=lot.pk).delete()

    assert PointsTransaction.objects.filter(pk=lot.pk).exists()


def test_deleting_a_transaction_by_raw_sql_is_refused(lot):
    # No ORM in the way (no collector, no PROTECT check): the database itself says no.
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM points_pointstransaction WHERE id = %s", [lot.pk])


@pytest.fixture
def allocation(lot, member):
    debit = points_adjust(member=member, amount=-30, reason="correction", created_by=None, idempotency_key="debit-1")
    return PointsAllocation.objects.get(transaction=debit)


def test_changing_an_allocation_is_refused(allocation):
    with pytest.raises(IntegrityError), transaction.atomic():
        PointsAllocation.objects.filter(pk=allocation.pk).update(points=1)


def test_deleting_an_allocation_is_refused(allocation):
    with pytest.raises(IntegrityError), transaction.atomic():
        PointsAllocation.objects.filter(pk=allocation.pk).delete()

    assert PointsAllocation.objects.filter(pk=allocation.pk).exists()


def test_a_credit_cannot_keep_more_than_it_earned(lot):
    with pytest.raises(IntegrityError), transaction.atomic():
        PointsTransaction.objects.filter(pk=lot.pk).update(remaining=101)


def test_member_balance_can_never_go_negative(member):
    with pytest.raises(IntegrityError), transaction.atomic():
        type(member).objects.filter(pk=member.pk).update(points_balance=-1)
