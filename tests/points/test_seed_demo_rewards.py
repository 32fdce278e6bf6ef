import pytest
from django.core.management import call_command

from points.models import Reward

pytestmark = pytest.mark.django_db


def test_seed_demo_rewards_creates_the_catalogue_once():
    call_command("seed_demo_rewards")
    call_command("seed_demo_rewards")

    assert Reward.objects.count() == 6
    assert Reward.objects.get(code="thermos").min_tier.code == "gold"
