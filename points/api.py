"""Storefront API for points: a member's ledger, the rewards catalogue, redemptions and the cash deduction quote.
Thin views: validate, call one service or selector, serialise."""
import django_filters
from django import forms
from django.utils.translation import gettext_lazy as _
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from members.api_fields import (
    ApiCursorPagination,
    ApiDateTimeField,
    DecimalStringField,
    moment_in_range,
    validated_input,
)
from members.api_schema import error_responses
from members.idempotency import KEY_PATTERN, IdempotentPostMixin, InvalidIdempotencyKey, idempotency_key_is_valid
from members.models import ApiScope
from members.selectors import member_get

from .models import PointsTransaction, Redemption
from .selectors import member_transactions, points_policy, rewards_for_member
from .services import points_deduction_limit, points_deduction_value, reward_redeem


class TransactionFilterForm(forms.Form):
    """The ledger filters' own checks beyond their types, answered as field errors (400 invalid)."""

    def clean(self):
        cleaned = super().clean()
        for name in self.fields:
            # django-filter takes an empty value for "no filter"; the API refuses it, as the schema's formats state.
            if "" in self.data.getlist(name):
                self._errors.pop(name, None)
                self.add_error(name, _("This field may not be blank."))
        for name in ("created_after", "created_before"):
            moment = cleaned.get(name)
            if moment and not moment_in_range(moment):
                # far outside the ledger's life, and SQLite cannot even store such a moment (a 500)
                self.add_error(name, ApiDateTimeField.default_error_messages["range"])
        return cleaned


class TransactionFilter(django_filters.FilterSet):
    """The ledger's query filters, applied by django-filter's backend (so the schema documents them)."""

    kind = django_filters.MultipleChoiceFilter(choices=PointsTransaction.Kind.choices, help_text="Repeat for several.")
    created_after = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="ISO 8601, from 1970 to 2999; inclusive."
    )
    created_before = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="ISO 8601, from 1970 to 2999; exclusive."
    )

    class Meta:
        model = PointsTransaction
        fields = ["kind", "created_after", "created_before"]
        form = TransactionFilterForm


class TransactionCursor(ApiCursorPagination):
    # Ids grow with time and are unique: a stable cursor even while new transactions arrive.
    ordering = "-id"


@extend_schema_serializer(component_name="PointsTransaction")
class TransactionOutput(serializers.ModelSerializer):
    class Meta:
        model = PointsTransaction
        fields = ["id", "kind", "amount", "remaining", "expires_at", "pending_until", "reference", "created_at"]


@extend_schema(tags=["points"])  # the area (SPECTACULAR_SETTINGS["TAGS"])
class MemberTransactionsView(generics.ListAPIView):
    required_scope = ApiScope.READ
    serializer_class = TransactionOutput
    filter_backends = [DjangoFilterBackend]  # invalid filters: 400 invalid with field errors
    filterset_class = TransactionFilter
    pagination_class = TransactionCursor

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator: no member in the path
            return PointsTransaction.objects.none()
        member = member_get(external_id=self.kwargs["external_id"])
        return member_transactions(member)

    @extend_schema(
        operation_id="members_transactions",
        summary="A member's points transactions, newest first",
        description="Cursor-paginated (follow `next`). Filter by kind (repeatable) and by a created_at range.",
        responses={200: TransactionOutput(many=True), **error_responses(400, 404)},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


@extend_schema_serializer(component_name="RewardOffer")
class RewardOfferOutput(serializers.Serializer):
    code = serializers.CharField(source="reward.code")
    name = serializers.CharField(source="reward.name")
    description = serializers.CharField(source="reward.description")
    kind = serializers.CharField(source="reward.kind")
    points_cost = serializers.IntegerField(source="reward.points_cost")
    value = serializers.DecimalField(source="reward.value", max_digits=12, decimal_places=2, allow_null=True)
    stock = serializers.IntegerField(source="reward.stock", allow_null=True, help_text="null: unlimited.")
    per_member_limit = serializers.IntegerField(source="reward.per_member_limit", allow_null=True)
    min_tier = serializers.CharField(source="reward.min_tier.code", allow_null=True, default=None)
    available_until = serializers.DateTimeField(source="reward.available_until", allow_null=True)
    eligible = serializers.BooleanField(help_text="Whether the member given can redeem one now.")
    reason = serializers.CharField(
        help_text="Empty when eligible; else the code redeeming would answer: insufficient_points, tier_too_low, "
        "member_limit_reached, out_of_stock, member_blocked."
    )
    redeemed = serializers.IntegerField(help_text="How many the member has redeemed (not cancelled).")


@extend_schema(tags=["points"])  # the area (SPECTACULAR_SETTINGS["TAGS"])
class RewardListView(APIView):
    required_scope = ApiScope.READ

    class Query(serializers.Serializer):
        member = serializers.CharField(
            max_length=64, required=False, allow_blank=True, help_text="A member's external_id: adds their eligibility."
        )

    @extend_schema(
        operation_id="rewards_list",
        summary="The rewards catalogue open now, with eligibility for a member",
        parameters=[Query],
        responses={200: RewardOfferOutput(many=True), **error_responses(400, 404)},
    )
    def get(self, request):
        external_id = validated_input(self.Query, request.query_params).get("member")
        member = member_get(external_id=external_id) if external_id else None
        return Response(RewardOfferOutput(rewards_for_member(member), many=True).data)


@extend_schema_serializer(component_name="Redemption")
class RedemptionOutput(serializers.ModelSerializer):
    member = serializers.CharField(source="member.external_id")
    reward = serializers.CharField(source="reward.code")
    points_balance = serializers.IntegerField(source="member.points_balance", help_text="After this redemption.")

    class Meta:
        model = Redemption
        fields = ["id", "member", "reward", "quantity", "points", "status", "voucher_code", "created_at", "points_balance"]


REDEMPTION_KEY_MAX_LENGTH = 100  # the redemption's own idempotency key column


@extend_schema(tags=["points"])  # the area (SPECTACULAR_SETTINGS["TAGS"])
class RedemptionCreateView(IdempotentPostMixin, APIView):
    required_scope = ApiScope.REDEMPTIONS

    @extend_schema_serializer(component_name="RedemptionInput")
    class Input(serializers.Serializer):
        member = serializers.CharField(max_length=64, help_text="The member's external_id.")
        reward = serializers.CharField(max_length=64, help_text="The reward's code.")
        quantity = serializers.IntegerField(min_value=1, max_value=1000, default=1)

    @extend_schema(
        operation_id="redemptions_create",
        summary="Redeem a reward with points",
        description="Needs an `Idempotency-Key` header (at most 100 characters here): the same key again answers "
        "the stored first response (with `Idempotent-Replayed: true`) and spends nothing; the same key with other "
        "data is 422 idempotency_key_reused (409 idempotency_conflict when the key was used through another API "
        "key or more than 24 hours ago for another redemption). 409 with a code when the "
        "member cannot redeem: insufficient_points, out_of_stock, member_limit_reached, tier_too_low, "
        "reward_unavailable, member_blocked.",
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                {"type": "string", "minLength": 1, "maxLength": REDEMPTION_KEY_MAX_LENGTH, "pattern": KEY_PATTERN},
                OpenApiParameter.HEADER,
                required=True,
            )
        ],
        request=Input,
        responses={
            201: RedemptionOutput,
            200: RedemptionOutput,
            **error_responses(
                400,
                404,
                409,
                codes={
                    400: ["invalid", "invalid_idempotency_key", "redemption_too_large", "domain_error"],
                    404: ["member_not_found", "reward_not_found"],
                    409: [
                        "insufficient_points", "out_of_stock", "member_limit_reached", "tier_too_low",
                        "reward_unavailable", "member_blocked", "idempotency_conflict",
                    ],
                },
            ),
        },
    )
    def post(self, request):
        key = request.headers.get("Idempotency-Key") or ""
        if not idempotency_key_is_valid(key, max_length=REDEMPTION_KEY_MAX_LENGTH):
            raise InvalidIdempotencyKey(
                _("Send an Idempotency-Key header: 1 to 100 visible ASCII characters, without spaces.")
            )
        data = validated_input(self.Input, request.data)
        member = member_get(external_id=data["member"])
        redemption, created = reward_redeem(
            member=member, reward_code=data["reward"], quantity=data["quantity"], idempotency_key=key
        )
        return Response(
            RedemptionOutput(redemption).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


@extend_schema_serializer(component_name="PointsQuote")
class PointsQuoteOutput(serializers.Serializer):
    points_balance = serializers.IntegerField()
    max_points = serializers.IntegerField(help_text="The most points this order may use (0: none).")
    max_value = serializers.DecimalField(max_digits=12, decimal_places=2, help_text="Their value off the order.")
    points_per_unit = serializers.IntegerField(help_text="Points per currency unit.")
    min_points = serializers.IntegerField(help_text="An order uses at least this many points, or none.")
    max_percent = serializers.IntegerField(help_text="Points pay at most this share of an order.")


@extend_schema(tags=["points"])  # the area (SPECTACULAR_SETTINGS["TAGS"])
class PointsQuoteView(APIView):
    required_scope = ApiScope.READ

    @extend_schema_serializer(component_name="PointsQuoteQuery")
    class Input(serializers.Serializer):
        order_total = DecimalStringField(
            max_digits=12, decimal_places=2, help_text="The order's value before points, a decimal string."
        )

    @extend_schema(
        operation_id="members_points_quote",
        summary="How many points an order may use as cash deduction",
        description="`order_total` is the order's value before points. Send the points chosen as `points_to_use` on "
        "POST /orders/, with `amount` the money paid (order_total minus the points' value).",
        parameters=[Input],
        responses={200: PointsQuoteOutput, **error_responses(400, 404)},
    )
    def get(self, request, external_id: str):
        data = validated_input(self.Input, request.query_params)
        member = member_get(external_id=external_id)
        policy = points_policy()
        available = 0 if member.is_blocked else member.points_balance
        max_points = points_deduction_limit(order_total=data["order_total"], available=available, policy=policy)
        body = {
            "points_balance": member.points_balance,
            "max_points": max_points,
            "max_value": points_deduction_value(max_points, policy),
            "points_per_unit": policy.deduction_points_per_unit,
            "min_points": policy.deduction_min_points,
            "max_percent": policy.deduction_max_percent,
        }
        return Response(PointsQuoteOutput(body).data)
