from django.contrib import admin
from django.urls import include, path, register_converter
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from campaigns.dashboard import dashboard_csv_view
from campaigns.engagement import api as engagement_api
from members import api as members_api
from members import privacy_api
from members.api_index import ApiIndexView
from members.identifiers import StoredIdConverter
from points import api as points_api
from tiers import api as tiers_api

register_converter(StoredIdConverter, "stored_id")

api_v1 = [
    path("members/", members_api.MemberRegisterView.as_view(), name="member-register"),
    path(
        "members/<stored_id:external_id>/transactions/",
        points_api.MemberTransactionsView.as_view(),
        name="member-transactions",
    ),
    path("members/<stored_id:external_id>/points-quote/", points_api.PointsQuoteView.as_view(), name="member-points-quote"),
    path("members/<stored_id:external_id>/export/", privacy_api.MemberExportView.as_view(), name="member-export"),
    path("members/<stored_id:external_id>/anonymise/", privacy_api.MemberAnonymiseView.as_view(), name="member-anonymise"),
    path("orders/", members_api.OrderRecordView.as_view(), name="order-record"),
    path("orders/<stored_id:order_id>/refunds/", members_api.OrderRefundView.as_view(), name="order-refund"),
    path("tiers/", tiers_api.TierListView.as_view(), name="tier-list"),
    path("rewards/", points_api.RewardListView.as_view(), name="reward-list"),
    path("redemptions/", points_api.RedemptionCreateView.as_view(), name="redemption-create"),
    # Engagement (campaigns.engagement)
    path("members/<stored_id:external_id>/coupons/", engagement_api.MemberCouponsView.as_view(), name="member-coupons"),
    path("members/<stored_id:external_id>/check-ins/", engagement_api.CheckInView.as_view(), name="member-check-ins"),
    path("members/<stored_id:external_id>/events/", engagement_api.EventCreateView.as_view(), name="member-events"),
    path("members/<stored_id:external_id>/badges/", engagement_api.MemberBadgesView.as_view(), name="member-badges"),
    # Last of the members/ routes, and <stored_id:...> throughout: an id stored before the character set of
    # members.identifiers may hold "/" ("shop/42"), and stays reachable (members/shop/42/transactions/ is that member's).
    path("members/<stored_id:external_id>/", members_api.MemberDetailView.as_view(), name="member-detail"),
    path("leaderboard/", engagement_api.LeaderboardView.as_view(), name="leaderboard"),
]

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    # The admin index's chart data as CSV (campaigns.dashboard); admin_view: staff only, else the login page.
    path("admin/dashboard/<slug:chart>.csv", admin.site.admin_view(dashboard_csv_view), name="admin-dashboard-csv"),
    path("admin/", admin.site.urls),
    # POST language=<code> (the admin's language menu): remembered in a cookie; the API follows Accept-Language.
    path("i18n/", include("django.conf.urls.i18n")),
    # GET /api/v1/ lists the patterns above; every error under /api/ is JSON (members.api_guard).
    path(
        "api/v1/",
        include(([path("", ApiIndexView.as_view(patterns=api_v1), name="index"), *api_v1], "api"), namespace="v1"),
    ),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
]
