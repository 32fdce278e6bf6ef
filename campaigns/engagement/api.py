"""Storefront API for engagement: coupons, check-ins, member events, badges and the leaderboard.
Thin views: validate, call one service or selector, serialise."""
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import generics, serializers, status
from rest_framework.permissions import SAFE_METHODS
from rest_framework.response import Response
from rest_framework.views import APIView

from members.api_fields import ApiCursorPagination, ApiDateTimeField, validated_input
from members.api_schema import error_responses
from members.idempotency import IdempotentPostMixin
from members.models import ApiScope
from members.selectors import member_get

from .models import Coupon, EngagementEvent
from .selectors import checkin_status, leaderboard, member_badges, member_coupons
from .services import checkin_record, engagement_event_record

COUPON_STATUSES = [*Coupon.Status.values, Coupon.EXPIRED]

# --- Coupons ------------------------------------------------------------------------------------------------------


class CouponCursor(ApiCursorPagination):
    ordering = "-id"  # newest first; ids are unique and grow, so the cursor is stable while coupons are granted


@extend_schema_serializer(component_name="Coupon")
class CouponOutput(serializers.ModelSerializer):
    status = serializers.SerializerMethodField(help_text="available, used, revoked, or expired (available but past "
                                                         "valid_until).")
    order_id = serializers.CharField(source="order.order_id", allow_null=True, default=None,
                                     help_text="The order that used it.")
    free_shipping = serializers.SerializerMethodField()

    class Meta:
        model = Coupon
        fields = [
            "code", "kind", "value", "min_spend", "free_shipping", "valid_from", "valid_until", "status", "source",
            "order_id", "discount", "used_at", "created_at",
        ]

    def get_status(self, coupon) -> str:
        return coupon.effective_status(self.context.get("now"))

    def get_free_shipping(self, coupon) -> bool:
        return coupon.kind == Coupon.Kind.FREE_SHIPPING


@extend_schema(tags=["engagement"])  # the area (SPECTACULAR_SETTINGS["TAGS"])
class MemberCouponsView(generics.ListAPIView):
    required_scope = ApiScope.READ
    serializer_class = CouponOutput
    pagination_class = CouponCursor

    @extend_schema_serializer(component_name="CouponFilter")
    class Filter(serializers.Serializer):
        status = serializers.ChoiceField(
            choices=COUPON_STATUSES, required=False, help_text="`available` lists the coupons usable now."
        )

    def get_queryset(self):
        member = member_get(external_id=self.kwargs["external_id"])
        params = validated_input(self.Filter, self.request.query_params)
        return member_coupons(member, status=params.get("status"))

    @extend_schema(
        operation_id="members_coupons",
        summary="A member's coupons, newest first",
        description="Cursor-paginated (follow `next`). `?status=available` lists the coupons usable now; use one "
        "with `coupon_code` on POST /orders/.",
        parameters=[Filter],
        responses={200: CouponOutput(many=True), **error_responses(400, 404)},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


# --- Check-ins ----------------------------------------------------------------------------------------------------


@extend_schema_serializer(component_name="CheckIn")
class CheckInOutput(serializers.Serializer):
    day = serializers.DateField(help_text="The local date (the programme's time zone).")
    streak = serializers.IntegerField(help_text="Consecutive days, today included.")
    points = serializers.IntegerField(help_text="Points earned, streak bonus included.")
    bonus_points = serializers.IntegerField(help_text="The streak bonus part of `points`.")
    points_balance = serializers.IntegerField(source="member.points_balance", help_text="After this check-in.")


@extend_schema_serializer(component_name="CheckInStatus")
class CheckInStatusOutput(serializers.Serializer):
    today = serializers.DateField()
    checked_in_today = serializers.BooleanField()
    streak = serializers.IntegerField(
        help_text="The current streak (0 when the last check-in is older than yesterday)."
    )
    last_day = serializers.DateField(allow_null=True)
    next_points = serializers.IntegerField(help_text="What the next check-in earns, streak bonus included.")
    next_bonus_in_days = serializers.IntegerField(
        allow_null=True, help_text="Check-ins after the next one before a streak bonus (0: the next one earns it)."
    )


@extend_schema(tags=["engagement"])  # the area (SPECTACULAR_SETTINGS["TAGS"])
class CheckInView(IdempotentPostMixin, APIView):
    @property
    def required_scope(self):
        # Reading the status is a read; checking in is an engagement write.
        return ApiScope.READ if self.request.method in SAFE_METHODS else ApiScope.ENGAGEMENT

    @extend_schema(
        operation_id="members_check_in_status",
        summary="Whether the member has checked in today, and their streak",
        responses={200: CheckInStatusOutput, **error_responses(404)},
    )
    def get(self, request, external_id: str):
        member = member_get(external_id=external_id)
        return Response(CheckInStatusOutput(checkin_status(member)).data)

    @extend_schema(
        operation_id="members_check_in",
        summary="Check the member in for today",
        description="Once per local day (the programme's TIME_ZONE): a second check-in the same day is 409 "
        "already_checked_in; a blocked member is 409 member_blocked. No body.",
        request=None,
        responses={
            201: CheckInOutput,
            **error_responses(404, 409, codes={409: ["already_checked_in", "member_blocked"]}),
        },
    )
    def post(self, request, external_id: str):
        member = member_get(external_id=external_id)
        checkin = checkin_record(member=member)
        return Response(CheckInOutput(checkin).data, status=status.HTTP_201_CREATED)


# --- Member events ------------------------------------------------------------------------------------------------


@extend_schema_serializer(component_name="MemberEvent")
class EventOutput(serializers.ModelSerializer):
    points_awarded = serializers.IntegerField(source="points")
    outcome = serializers.ChoiceField(
        choices=EngagementEvent.Outcome.values,
        help_text="rewarded; or, with 0 points: daily_cap_reached, rule_inactive, member_blocked.",
    )
    created = serializers.SerializerMethodField(help_text="False when this event had been recorded before.")

    class Meta:
        model = EngagementEvent
        fields = ["kind", "reference", "occurred_at", "day", "points_awarded", "outcome", "created"]

    def get_created(self, event) -> bool:
        return self.context["created"]


@extend_schema(tags=["engagement"])  # the area (SPECTACULAR_SETTINGS["TAGS"])
class EventCreateView(IdempotentPostMixin, APIView):
    required_scope = ApiScope.ENGAGEMENT

    @extend_schema_serializer(component_name="MemberEventInput")
    class Input(serializers.Serializer):
        # Not trimmed: a kind is a slug exactly as the schema's pattern states.
        kind = serializers.SlugField(
            max_length=32, trim_whitespace=False, help_text="An event rule's kind: review, photo-review, share..."
        )
        reference = serializers.CharField(
            max_length=64, help_text="The thing's id in the shop (review id, shared URL...): one reward per reference."
        )
        occurred_at = ApiDateTimeField(required=False, help_text="ISO 8601, from 1970 to 2999. Default: now.")

    @extend_schema(
        operation_id="members_events",
        summary="Report a member event (review, share...) to be rewarded",
        description="Points by the event rule, at most its daily cap of rewarded events per local day; beyond it the "
        "event is recorded with 0 points and outcome daily_cap_reached (still 201). Idempotent by (kind, reference): "
        "the same event again answers 200 with the first result. An unknown kind is 400 unknown_event_kind.",
        request=Input,
        responses={
            201: EventOutput,
            200: EventOutput,
            **error_responses(
                400, 404, 409,
                codes={400: ["invalid", "unknown_event_kind", "domain_error"], 409: ["idempotency_conflict"]},
            ),
        },
    )
    def post(self, request, external_id: str):
        data = validated_input(self.Input, request.data)
        member = member_get(external_id=external_id)
        event, created = engagement_event_record(member=member, **data)
        return Response(
            EventOutput(event, context={"created": created}).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


# --- Badges -------------------------------------------------------------------------------------------------------


@extend_schema_serializer(component_name="MemberBadge")
class BadgeOutput(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    icon = serializers.CharField()
    criterion = serializers.CharField()
    threshold = serializers.DecimalField(max_digits=14, decimal_places=2)
    tier = serializers.CharField(source="tier.code", allow_null=True, default=None)
    earned = serializers.SerializerMethodField()
    awarded_at = serializers.DateTimeField(allow_null=True)

    def get_earned(self, badge) -> bool:
        return badge.awarded_at is not None


@extend_schema(tags=["engagement"])  # the area (SPECTACULAR_SETTINGS["TAGS"])
class MemberBadgesView(APIView):
    required_scope = ApiScope.READ

    @extend_schema_serializer(component_name="BadgeFilter")
    class Filter(serializers.Serializer):
        earned = serializers.BooleanField(required=False, default=False, help_text="true: only the badges earned.")

    @extend_schema(
        operation_id="members_badges",
        summary="The member's badge wall",
        description="Every active badge (earned or not yet) and any retired one the member holds, in wall order.",
        parameters=[Filter],
        responses={200: BadgeOutput(many=True), **error_responses(400, 404)},
    )
    def get(self, request, external_id: str):
        params = validated_input(self.Filter, request.query_params)
        member = member_get(external_id=external_id)
        badges = member_badges(member)
        if params["earned"]:
            badges = badges.filter(awarded_at__isnull=False)
        return Response(BadgeOutput(badges, many=True).data)


# --- Leaderboard --------------------------------------------------------------------------------------------------


@extend_schema_serializer(component_name="LeaderboardEntry")
class LeaderboardEntryOutput(serializers.Serializer):
    rank = serializers.IntegerField(help_text="Ties share a rank.")
    external_id = serializers.CharField()
    display_name = serializers.CharField(help_text="The name masked for a public page (\"L* N*\").")
    value = serializers.IntegerField(help_text="Points earned in the period, or growth value.")


@extend_schema_serializer(component_name="Leaderboard")
class LeaderboardOutput(serializers.Serializer):
    board = serializers.CharField()
    period = serializers.CharField(help_text="YYYY-MM for the points board; \"current\" for growth.")
    results = LeaderboardEntryOutput(many=True)


@extend_schema(tags=["engagement"])  # the area (SPECTACULAR_SETTINGS["TAGS"])
class LeaderboardView(APIView):
    required_scope = ApiScope.READ

    @extend_schema_serializer(component_name="LeaderboardQuery")
    class Input(serializers.Serializer):
        board = serializers.ChoiceField(choices=["points", "growth"], default="points")
        limit = serializers.IntegerField(min_value=1, max_value=100, default=10)
        # ASCII digits and \Z: exactly the schema's pattern (Python's \d and $ would also take other digits and "\n").
        month = serializers.RegexField(
            r"^(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2])\Z",  # years 1900-2999: month arithmetic stays in range
            required=False,
            trim_whitespace=False,
            help_text="YYYY-MM (1900-2999), points board only.",
        )

    @extend_schema(
        operation_id="leaderboard",
        summary="Top members by points earned in a month, or by growth value",
        description="`board=points` (default): points earned in the local calendar month (`month`, default this "
        "one): order points and every bonus (check-ins, events, referrals, birthdays, campaigns), net of refund "
        "clawbacks; not staff adjustments or imports. `board=growth`: growth value now. Blocked members are left "
        "out. Cached for a minute.",
        parameters=[Input],
        responses={200: LeaderboardOutput, **error_responses(400)},
    )
    def get(self, request):
        data = validated_input(self.Input, request.query_params)
        month = tuple(int(part) for part in data["month"].split("-")) if data.get("month") else None
        return Response(LeaderboardOutput(leaderboard(board=data["board"], limit=data["limit"], month=month)).data)
