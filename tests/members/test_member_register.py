import pytest

from members.errors import UnknownReferralCode
from members.models import Member
from members.services import member_register

pytestmark = pytest.mark.django_db


def test_registering_creates_the_member_with_a_unique_referral_code():
    first, created = member_register(external_id="a", name="Alice")
    second, _ = member_register(external_id="b")

    assert created is True
    assert first.referral_code != second.referral_code
    assert len(first.referral_code) == 8


def test_registering_again_updates_only_the_fields_given():
    member_register(external_id="a", name="Alice", email="alice@example.com")

    member, created = member_register(external_id="a", phone="13800000000")

    assert created is False
    assert (member.name, member.email, member.phone) == ("Alice", "alice@example.com", "+8613800000000")
    assert Member.objects.count() == 1


def test_changing_a_consent_stamps_when_it_changed():
    member, _ = member_register(external_id="a")
    assert member.consents_updated_at is None

    member, _ = member_register(external_id="a", sms_opt_in=True)

    assert member.sms_opt_in is True
    assert member.consents_updated_at is not None


def test_a_referral_code_links_the_new_member_to_the_referrer():
    referrer, _ = member_register(external_id="a")

    member, _ = member_register(external_id="b", referral_code=referrer.referral_code)

    assert member.referred_by == referrer


def test_an_unknown_referral_code_refuses_the_registration():
    with pytest.raises(UnknownReferralCode):
        member_register(external_id="b", referral_code="ZZZZZZZZ")
    assert not Member.objects.exists()
