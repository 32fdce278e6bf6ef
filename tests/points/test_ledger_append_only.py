"""The database itself refuses to rewrite ledger history; only a lot's `remaining` may change."""
import pytest
from django.db import IntegrityError, transaction

from points.models import PointsTransaction
from points.services import points_earn

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


@pytest.mark.postgres  # the delete guard is PostgreSQL-only: SQLite's test flush empties tables with DELETE
def test_deleting_a_transaction_is_refused(lot):
    with pytest.raises(IntegrityError), transaction.atomic():
        PointsTransaction.objects.filter(pk=lot.pk).delete()


def test_a_credit_cannot_keep_more_than_it_earned(lot):
    with pytest.raises(IntegrityError), transaction.atomic():
        PointsTransaction.objects.filter(pk=lot.pk).update(remaining=101)


def test_member_balance_can_never_go_negative(member):
    with pytest.raises(IntegrityError), transaction.atomic():
        type(member).objects.filter(pk=member.pk).update(points_balance=-1)
