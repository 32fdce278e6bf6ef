"""Storefront/back-office API for privacy requests (scope `privacy`): a member's data as JSON, and anonymisation.
See members.privacy for what is exported, what is erased and what is kept."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from members.api_fields import validated_input
from members.api_schema import error_responses
from members.idempotency import IdempotentPostMixin

from .models import ApiScope
from .privacy import member_anonymise, member_export
from .selectors import member_get


@extend_schema(tags=["privacy"])  # the area (SPECTACULAR_SETTINGS["TAGS"])
class MemberExportView(APIView):
    required_scope = ApiScope.PRIVACY

    @extend_schema(
        operation_id="members_export",
        summary="Everything held about a member, as JSON (right of access)",
        description="Sections: profile, consents, status (balances, RFM), tags, orders (with refunds), tier (tier, "
        "history, growth events), points (ledger transactions, redemptions), engagement (coupons, check-ins, badges, "
        "referrals, events), messages (channel, subject, body, sent_at). Decimals are strings, times ISO 8601.",
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="The member's data."),
            **error_responses(404),
        },
    )
    def get(self, request, external_id: str):
        member = member_get(external_id=external_id)
        return Response(member_export(member=member))


@extend_schema(tags=["privacy"])  # the area (SPECTACULAR_SETTINGS["TAGS"])
class MemberAnonymiseView(IdempotentPostMixin, APIView):
    required_scope = ApiScope.PRIVACY

    @extend_schema_serializer(component_name="AnonymiseInput")
    class Input(serializers.Serializer):
        reason = serializers.CharField(max_length=500, help_text="Why (e.g. the erasure request's reference).")

    @extend_schema_serializer(component_name="Anonymised")
    class Output(serializers.Serializer):
        external_id = serializers.CharField(
            help_text="The member's id from now on (anonymised-<n>); the old id is free for a new sign-up."
        )
        anonymised = serializers.BooleanField(help_text="False when the member had been anonymised before.")

    @extend_schema(
        operation_id="members_anonymise",
        summary="Anonymise a member (right to erasure), keeping the ledger and reports",
        description="Blanks email, phone, name, birthday and region, withdraws consents, removes tags, blanks the "
        "recipient, subject and body of the member's messages, blocks the member and replaces the external_id with "
        "`anonymised-<n>`. Orders, points ledger, tier history and growth events stay, so balances, the points "
        "liability and reports are unchanged. Idempotent: calling again with the new id answers 200 with "
        "anonymised=false.",
        request=Input,
        responses={200: Output, **error_responses(400, 404, codes={400: ["invalid", "domain_error"]})},
        examples=[OpenApiExample("Request", value={"reason": "GDPR erasure request #4711"}, request_only=True)],
    )
    def post(self, request, external_id: str):
        data = validated_input(self.Input, request.data)
        member = member_get(external_id=external_id)
        changed = member_anonymise(member=member, reason=data["reason"], actor=f"API key {request.auth.name}")
        return Response(self.Output({"external_id": member.external_id, "anonymised": changed}).data)
