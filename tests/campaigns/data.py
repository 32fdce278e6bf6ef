"""Rows of the segments feature for the admin smoke tests (tests/admin): a tag and a segment using it."""
from campaigns.models import Segment
from members.models import Tag


def segment_rows(member):
    # The tag stays off `member`: tests/admin posts the member form back as rendered, and tags there are covered by
    # tests/campaigns/test_segments_admin.py.
    tag = Tag.objects.create(name="VIP", color="#b45309")
    return Segment.objects.create(name="VIPs in Shanghai", filters={"tags": [tag.pk], "regions": ["Shanghai"]})
