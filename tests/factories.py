from datetime import timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from members.models import Member, Order
from members.services import member_register, order_record


class MemberFactory(factory.django.DjangoModelFactory):
    """Registers through the service, so a factory member starts on the entry tier like a real one."""

    class Meta:
        model = Member

    external_id = factory.Sequence(lambda n: f"cust-{n:05d}")
    name = factory.Faker("name")
    email = factory.Faker("email")
    phone = factory.Sequence(lambda n: f"138{n:08d}")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        member, _created = member_register(**kwargs)
        return member


def legacy_member(member_factory, external_id: str) -> Member:
    """A member stored before the id character set (members.identifiers), whose id is outside it: registered, then
    renamed in the database as such a row would be."""
    member = member_factory()
    Member.objects.filter(pk=member.pk).update(external_id=external_id)
    member.refresh_from_db()
    return member


class OrderFactory(factory.django.DjangoModelFactory):
    """Records through `order_record`, so points, growth and tier follow as they would from the API.
    Pass `customer_id` (a member's external_id)."""

    class Meta:
        model = Order

    order_id = factory.Sequence(lambda n: f"ord-{n:06d}")
    placed_at = factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=5))
    amount = Decimal("100.00")
    currency = "CNY"

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return order_record(**kwargs).order
