"""Storefront API for the ladder: thin views over tiers.selectors."""
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from members.api import TierBenefitsOutput
from members.models import ApiScope

from .selectors import tier_ladder, tier_summary


@extend_schema_serializer(component_name="Tier")
class TierOutput(serializers.Serializer):
    @extend_schema_serializer(component_name="TierThresholds")
    class Thresholds(serializers.Serializer):
        growth = serializers.IntegerField(source="min_growth", allow_null=True)
        spend = serializers.DecimalField(source="min_spend", max_digits=14, decimal_places=2, allow_null=True)
        orders = serializers.IntegerField(source="min_orders", allow_null=True)

    code = serializers.CharField()
    name = serializers.CharField()
    rank = serializers.IntegerField()
    description = serializers.CharField()
    validity_months = serializers.IntegerField(
        allow_null=True, help_text="How long the tier holds once reached; null: it never expires."
    )
    thresholds = Thresholds(source="*", help_text="Every threshold that is set must be met; null: not required.")
    benefits = serializers.SerializerMethodField()

    @extend_schema_field(TierBenefitsOutput)
    def get_benefits(self, tier):
        return TierBenefitsOutput(tier_summary(tier)["benefits"]).data


@extend_schema(tags=["tiers"])  # the area (SPECTACULAR_SETTINGS["TAGS"])
class TierListView(APIView):
    required_scope = ApiScope.READ

    @extend_schema(
        operation_id="tiers_list",
        summary="The tier ladder, lowest rank first, with thresholds and benefits",
        responses={200: TierOutput(many=True)},  # 401, 403, 429: added for every operation by ApiAutoSchema
    )
    def get(self, request):
        return Response(TierOutput(tier_ladder(with_perks=True), many=True).data)
