"""Storefront API for members and orders: validate, call one service, serialise."""

from django.conf import settings
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from members.api_fields import ApiDateTimeField, DecimalStringField, validated_input
from members.api_schema import ErrorSerializer, error_responses  # noqa: F401 (ErrorSerializer: re-exported, as before)
from members.idempotency import IdempotentPostMixin

from .errors import OrderNotFound
from .identifiers import IDENTIFIER_HELP, IDENTIFIER_MAX_LENGTH, validate_identifier
from .limits import AMOUNT_HELP, BIRTHDAY_HELP, ORDER_AMOUNT_MAX, ORDER_QUANTITY_MAX, birthday_validator
from .models import ActivityStatus, ApiScope, RfmSegment
from .phones import phone_validator
from .selectors import member_detail, member_get
from .services import member_register, order_record, order_refund


@extend_schema_serializer(component_name="TierPerk")
class TierPerkOutput(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()


@extend_schema_serializer(component_name="TierBenefits")
class TierBenefitsOutput(serializers.Serializer):
    points_multiplier = serializers.DecimalField(max_digits=5, decimal_places=2)
    discount_percent = serializers.DecimalField(max_digits=5, decimal_places=2)
    free_shipping = serializers.BooleanField()
    birthday_bonus_points = serializers.IntegerField()
    perks = TierPerkOutput(many=True, help_text="Named perks of the tier (priority support, early access...).")


@extend_schema_serializer(component_name="TierSummary")
class TierSummaryOutput(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    rank = serializers.IntegerField()
    validity_months = serializers.IntegerField(
        allow_null=True, help_text="How long the tier holds once reached; null: it never expires."
    )
    benefits = TierBenefitsOutput()


@extend_schema_serializer(component_name="TierMissing")
class TierMissingOutput(serializers.Serializer):
    growth = serializers.IntegerField()
    spend = serializers.DecimalField(max_digits=14, decimal_places=2)
    orders = serializers.IntegerField()


@extend_schema_serializer(component_name="GrowthLeavingWindow")
class GrowthLeavingOutput(serializers.Serializer):
    at = serializers.DateTimeField(help_text="From this moment this growth no longer counts.")
    growth = serializers.IntegerField()


@extend_schema_serializer(component_name="NextTier")
class NextTierOutput(TierSummaryOutput):
    missing = TierMissingOutput(help_text="What is still missing to reach this tier.")
    growth_leaving_window = GrowthLeavingOutput(
        many=True, help_text="The next moments when growth counted now leaves the qualification window, and how much."
    )


@extend_schema_serializer(component_name="TierKeep")
class TierKeepOutput(serializers.Serializer):
    evaluated_at = serializers.DateTimeField(help_text="When the member is re-evaluated for the current tier.")
    in_grace = serializers.BooleanField(help_text="The validity has ended; the tier is kept until evaluated_at.")
    qualified = serializers.BooleanField(help_text="Whether the growth, spend and orders still counted then suffice.")
    missing = TierMissingOutput(help_text="What is missing by then to keep the tier.")


@extend_schema_serializer(component_name="TierStatus")
class TierStatusOutput(serializers.Serializer):
    expires_at = serializers.DateTimeField(allow_null=True, help_text="End of the validity; null: never.")
    grace_until = serializers.DateTimeField(allow_null=True, help_text="End of the grace period, when in one.")
    overridden = serializers.BooleanField(help_text="The tier was set by staff.")
    override_until = serializers.DateTimeField(allow_null=True, help_text="When a staff override ends.")
    keep = TierKeepOutput(allow_null=True, help_text="What it takes to keep the tier; null when it never expires.")


@extend_schema_serializer(component_name="Qualification")
class QualificationOutput(serializers.Serializer):
    window = serializers.ChoiceField(choices=["rolling", "calendar_year", "lifetime"])
    window_months = serializers.IntegerField(allow_null=True, help_text="For the rolling window.")
    growth = serializers.IntegerField(help_text="Growth value counted in the window now.")
    spend = serializers.DecimalField(max_digits=14, decimal_places=2, help_text="Qualifying spend in the window.")
    orders = serializers.IntegerField(help_text="Qualifying orders in the window.")


@extend_schema_serializer(component_name="Rfm")
class RfmOutput(serializers.Serializer):
    recency = serializers.IntegerField(allow_null=True, help_text="1-5: 5 = the most recent fifth of buyers.")
    frequency = serializers.IntegerField(allow_null=True, help_text="1-5: 5 = the fifth with the most orders.")
    monetary = serializers.IntegerField(allow_null=True, help_text="1-5: 5 = the fifth with the highest spend.")
    segment = serializers.ChoiceField(
        choices=RfmSegment.choices, allow_null=True, help_text="The RFM segment; null until scored."
    )
    updated_at = serializers.DateTimeField(allow_null=True, help_text="When the scores, segment or activity changed.")


@extend_schema_serializer(component_name="MemberDetail")
class MemberDetailOutput(serializers.Serializer):
    @extend_schema_serializer(component_name="ExpiringPoints")
    class ExpiringPoints(serializers.Serializer):
        date = serializers.DateField()
        points = serializers.IntegerField()

    external_id = serializers.CharField()
    email = serializers.CharField(help_text="Empty when unknown.")
    phone = serializers.CharField()
    name = serializers.CharField()
    birthday = serializers.DateField(allow_null=True)
    region = serializers.CharField()
    joined_at = serializers.DateTimeField()
    email_opt_in = serializers.BooleanField()
    sms_opt_in = serializers.BooleanField()
    referral_code = serializers.CharField(help_text="This member's own code, to share with friends.")
    tier = TierSummaryOutput(allow_null=True, help_text="The tier held and its benefits in force.")
    tier_expires_at = serializers.DateTimeField(allow_null=True)
    tier_status = TierStatusOutput()
    qualification = QualificationOutput(help_text="What counts toward tiers now, in the qualification window.")
    next_tier = NextTierOutput(allow_null=True, help_text="The next rung up, or null at the top of the ladder.")
    is_blocked = serializers.BooleanField(help_text="A blocked member earns and spends no points.")
    points_balance = serializers.IntegerField(help_text="Points available to spend.")
    points_pending = serializers.IntegerField(help_text="Points earned but not yet spendable.")
    points_debt = serializers.IntegerField(help_text="Points owed after refunds; paid off by later earnings.")
    points_expiring_soon = ExpiringPoints(
        many=True,
        help_text="Points expiring within the policy's window (30 days by default), by the last day they can be used.",
    )
    growth_value = serializers.IntegerField(help_text="Growth value in the qualification window.")
    lifetime_spend = serializers.DecimalField(max_digits=14, decimal_places=2)
    currency = serializers.CharField()
    order_count = serializers.IntegerField()
    first_order_at = serializers.DateTimeField(allow_null=True)
    last_order_at = serializers.DateTimeField(allow_null=True)
    activity_status = serializers.ChoiceField(
        choices=ActivityStatus.choices,
        help_text="active (ordered within 30 days), dormant (30+ days), churn_risk (90+ days, or a valuable buyer "
        "gone quiet), no_purchase. Refreshed nightly; an order makes the member active at once.",
    )
    rfm = RfmOutput(help_text="Recency, frequency and monetary scores (quintiles among buyers) and the RFM segment.")



def _identifier_field(help_text: str = "") -> serializers.CharField:
    """A new id: the one character set of members.identifiers (the schema states its pattern)."""
    return serializers.CharField(
        max_length=IDENTIFIER_MAX_LENGTH, validators=[validate_identifier], help_text=f"{help_text} {IDENTIFIER_HELP}".strip()
    )


@extend_schema(tags=["members"])  # the area (SPECTACULAR_SETTINGS["TAGS"])
class MemberRegisterView(IdempotentPostMixin, APIView):
    required_scope = ApiScope.MEMBERS

    @extend_schema_serializer(component_name="MemberRegistration")
    class Input(serializers.Serializer):
        external_id = _identifier_field()
        email = serializers.EmailField(required=False, allow_blank=True)
        phone = serializers.CharField(
            max_length=32, required=False, allow_blank=True, validators=[phone_validator],
            help_text="Any common spelling (\"138 0013 8000\", \"+86 138-0013-8000\"); stored in E.164, a number "
                      "without a country code read in the programme's region (LOYALTY_PHONE_REGION). 400 when invalid.",
        )
        name = serializers.CharField(max_length=150, required=False, allow_blank=True)
        birthday = serializers.DateField(
            required=False, allow_null=True, validators=[birthday_validator], help_text=BIRTHDAY_HELP
        )
        region = serializers.CharField(max_length=64, required=False, allow_blank=True)
        email_opt_in = serializers.BooleanField(required=False)
        sms_opt_in = serializers.BooleanField(required=False)
        referral_code = serializers.CharField(
            max_length=16, required=False, allow_blank=True, help_text="The referrer's code, counted at sign-up only."
        )

    @extend_schema(
        operation_id="members_register",
        summary="Register a member, or update their profile",
        description="Upsert by external_id: 201 when the member is new, 200 when an existing profile was updated. "
        "Fields left out keep their value.",
        request=Input,
        responses={
            201: MemberDetailOutput,
            200: MemberDetailOutput,
            **error_responses(400, codes={400: ["invalid", "unknown_referral_code", "referral_refused"]}),
        },
    )
    def post(self, request):
        data = validated_input(self.Input, request.data)
        member, created = member_register(**data)
        return Response(
            MemberDetailOutput(member_detail(member)).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


@extend_schema(tags=["members"])  # the area (SPECTACULAR_SETTINGS["TAGS"])
class MemberDetailView(APIView):
    required_scope = ApiScope.READ

    @extend_schema(
        operation_id="members_retrieve",
        summary="A member's balances, tier and progress",
        responses={200: MemberDetailOutput, **error_responses(404)},
    )
    def get(self, request, external_id: str):
        member = member_get(external_id=external_id)
        return Response(MemberDetailOutput(member_detail(member)).data)


@extend_schema(tags=["orders"])  # the area (SPECTACULAR_SETTINGS["TAGS"])
class OrderRecordView(IdempotentPostMixin, APIView):
    required_scope = ApiScope.ORDERS

    @extend_schema_serializer(component_name="OrderInput")
    class Input(serializers.Serializer):
        order_id = _identifier_field()
        customer_id = serializers.CharField(max_length=64, help_text="The member's external_id.")
        placed_at = ApiDateTimeField(
            help_text="ISO 8601, from 1970 to 2999. Without an offset, the site time zone (TIME_ZONE) is assumed."
        )
        amount = DecimalStringField(
            max_digits=12, decimal_places=2, max_value=ORDER_AMOUNT_MAX,
            help_text=f"Paid amount, as a decimal string. {AMOUNT_HELP}",
        )
        currency = serializers.CharField(min_length=3, max_length=3, default=settings.LOYALTY_CURRENCY)
        quantity = serializers.IntegerField(min_value=1, max_value=ORDER_QUANTITY_MAX, default=1)
        category = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
        channel = serializers.CharField(max_length=32, required=False, allow_blank=True, default="")
        points_to_use = serializers.IntegerField(
            min_value=0,
            max_value=10**12,
            default=0,
            help_text="Points paying part of this order (cash deduction; see GET members/{external_id}/points-quote/). "
            "`amount` is then the money paid.",
        )
        coupon_code = serializers.CharField(
            max_length=32,
            required=False,
            allow_blank=True,
            default="",
            help_text="A coupon of this member's (GET members/{external_id}/coupons/), used once by this order: "
            "400 coupon_not_found / coupon_not_owner; 409 coupon_used, coupon_revoked, coupon_expired, "
            "coupon_not_yet_valid, coupon_min_spend (then nothing of the order is recorded).",
        )

    @extend_schema_serializer(component_name="OrderRecorded")
    class Output(serializers.Serializer):
        order_id = serializers.CharField()
        customer_id = serializers.CharField()
        points_earned = serializers.IntegerField()
        growth_earned = serializers.IntegerField()
        points_used = serializers.IntegerField()
        tier = serializers.CharField(allow_null=True, help_text="The member's tier code after this order.")
        created = serializers.BooleanField(help_text="False when this order had been recorded before.")

    @extend_schema(
        operation_id="orders_record",
        summary="Record a paid order: earn points and growth, upgrade the tier",
        description="Idempotent by order_id: the same order posted again answers 200 with the first result and "
        "credits nothing; the same order_id with different data is 409 order_conflict.",
        request=Input,
        responses={
            201: Output,
            200: Output,
            **error_responses(
                400,
                404,
                409,
                codes={
                    400: [
                        "invalid", "invalid_order", "unsupported_currency", "invalid_points_deduction",
                        "coupon_not_found", "coupon_not_owner",
                    ],
                    404: ["member_not_found"],
                    409: [
                        "order_conflict", "coupon_used", "coupon_revoked", "coupon_expired", "coupon_not_yet_valid",
                        "coupon_min_spend", "insufficient_points", "member_blocked", "member_totals_limit",
                    ],
                },
            ),
        },
    )
    def post(self, request):
        data = validated_input(self.Input, request.data)
        result = order_record(**data)
        order, member = result.order, result.member
        body = {
            "order_id": order.order_id,
            "customer_id": member.external_id,
            "points_earned": order.points_earned,
            "growth_earned": order.growth_earned,
            "points_used": order.points_used,
            "tier": member.tier.code if member.tier_id else None,
            "created": result.created,
        }
        return Response(self.Output(body).data, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


@extend_schema(tags=["orders"])  # the area (SPECTACULAR_SETTINGS["TAGS"])
class OrderRefundView(IdempotentPostMixin, APIView):
    required_scope = ApiScope.ORDERS

    @extend_schema_serializer(component_name="RefundInput")
    class Input(serializers.Serializer):
        refund_id = _identifier_field()
        amount = DecimalStringField(
            max_digits=12, decimal_places=2, positive=True,
            help_text="Refunded amount, a decimal string; at most what is left to refund on the order.",
        )

    @extend_schema_serializer(component_name="RefundRecorded")
    class Output(serializers.Serializer):
        refund_id = serializers.CharField()
        order_id = serializers.CharField()
        customer_id = serializers.CharField()
        amount = serializers.DecimalField(max_digits=12, decimal_places=2)
        order_refunded_amount = serializers.DecimalField(max_digits=12, decimal_places=2)
        order_status = serializers.CharField()
        points_clawed_back = serializers.IntegerField()
        points_debt = serializers.IntegerField(help_text="Clawed-back points the balance could not cover, now owed.")
        points_forgiven = serializers.IntegerField(help_text="Under the within-balance policy: not taken back.")
        points_returned = serializers.IntegerField(help_text="Points used on the order, given back.")
        growth_clawed_back = serializers.IntegerField()
        points_balance = serializers.IntegerField()
        created = serializers.BooleanField(help_text="False when this refund had been recorded before.")

    @extend_schema(
        operation_id="orders_refund",
        summary="Refund (part of) an order: claw back its points and growth",
        description="Partial and repeated refunds add up to at most the order's amount (beyond: 400 "
        "refund_exceeds_order). Idempotent by refund_id: the same refund again answers 200 with the first result; "
        "the same refund_id with other data is 409 refund_conflict.",
        request=Input,
        responses={
            201: Output,
            200: Output,
            **error_responses(
                400,
                404,
                409,
                codes={
                    400: ["invalid", "invalid_refund", "refund_exceeds_order"],
                    404: ["order_not_found"],
                    409: ["refund_conflict"],
                },
            ),
        },
    )
    def post(self, request, order_id: str):
        data = validated_input(self.Input, request.data)
        if "\x00" in order_id:  # no order id holds NUL, and PostgreSQL refuses it in a query: not found, not a 500
            raise OrderNotFound()
        result = order_refund(order_id=order_id, **data)
        refund, order, member = result.refund, result.order, result.member
        body = {
            "refund_id": refund.refund_id,
            "order_id": order.order_id,
            "customer_id": member.external_id,
            "amount": refund.amount,
            "order_refunded_amount": order.refunded_amount,
            "order_status": order.status,
            "points_clawed_back": refund.points_clawed_back,
            "points_debt": refund.points_debt,
            "points_forgiven": refund.points_forgiven,
            "points_returned": refund.points_returned,
            "growth_clawed_back": refund.growth_clawed_back,
            "points_balance": member.points_balance,
            "created": result.created,
        }
        return Response(self.Output(body).data, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)
