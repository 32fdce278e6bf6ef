"""bench.admin's measured part: the scenarios (first page, pages, every list_filter, sort and search of the big
changelists, built at runtime from the admins), their timed requests with django.test.Client, and EXPLAIN of a miss.

Split out of bench/admin.py (which keeps the runner, `python -m bench.admin`, and the report) so each module stays
under 600 lines; the measurements are the ones the benchmark always took.
"""

import re
import statistics
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from urllib.parse import urlencode

from bench.admin_load import users_create
from bench.common import log

TARGET_MS = 300.0

# --- Measure -------------------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    admin: str
    name: str
    url: str
    target: bool = True  # in the 300 ms target (changelists) or for information only


@dataclass
class Result:
    scenario: Scenario
    status: int | str = "-"
    latencies: list[float] = field(default_factory=list)
    queries: int | None = None
    slowest_sql_ms: float | None = None
    slowest_sql: str = ""
    rows: str = "-"
    error: str = ""

    def pct(self, q: int) -> float:
        if not self.latencies:
            return float("nan")
        if len(self.latencies) == 1:
            return self.latencies[0] * 1000
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[q - 1] * 1000

    @property
    def verdict(self) -> str:
        if self.error or self.status != 200 or not self.latencies:
            return "error"
        return "met" if self.pct(95) < TARGET_MS else "missed"


class Targets:
    """Concrete values for the searches and filters, read from the loaded data (works with --skip-load too)."""

    def __init__(self):
        from django.db import connection

        with connection.cursor() as c:
            # The member with the most orders (the skew puts them among the oldest).
            c.execute("SELECT member_id FROM members_order WHERE member_id IN "
                      "(SELECT id FROM members_member ORDER BY id LIMIT 20) "
                      "GROUP BY member_id ORDER BY count(*) DESC LIMIT 1")
            row = c.fetchone()
            self.busy_member = row[0] if row else None
            # A typical member: one from the middle of the buyers.
            c.execute("SELECT min(id), max(id) FROM members_member")
            lo, hi = c.fetchone()
            mid = lo + (hi - lo) // 2
            c.execute("SELECT id, external_id, email, phone FROM members_member WHERE id >= %s ORDER BY id LIMIT 1",
                      [mid])
            self.member_id, self.external_id, self.email, self.phone = c.fetchone()
            if self.busy_member is None:
                self.busy_member = self.member_id
            c.execute("SELECT external_id, email FROM members_member WHERE id = %s", [self.busy_member])
            self.busy_external_id, self.busy_email = c.fetchone()
            c.execute("SELECT id, order_id FROM members_order WHERE member_id = %s ORDER BY id LIMIT 1",
                      [self.member_id])
            row = c.fetchone() or (None, "ord-1")
            self.order_pk, self.order_id = row
            if self.order_pk is None:
                c.execute("SELECT id, order_id FROM members_order ORDER BY id LIMIT 1")
                self.order_pk, self.order_id = c.fetchone()
            c.execute("SELECT idempotency_key, reference FROM points_pointstransaction "
                      "WHERE member_id = %s AND reference LIKE 'ord-%%' ORDER BY id LIMIT 1", [self.member_id])
            row = c.fetchone()
            if row is None:
                c.execute("SELECT idempotency_key, reference FROM points_pointstransaction "
                          "WHERE reference LIKE 'ord-%%' ORDER BY id LIMIT 1")
                row = c.fetchone()
            self.idempotency_key, self.reference = row or ("bench-1", "ord-1")
            c.execute("SELECT m.external_id FROM points_redemption r JOIN members_member m ON m.id = r.member_id "
                      "ORDER BY r.id LIMIT 1 OFFSET 100")
            row = c.fetchone()
            self.redeeming_external_id = row[0] if row else self.external_id

    @staticmethod
    def common_and_rare(table_name: str, column: str) -> tuple[str | None, str | None]:
        """The most and the least common value the planner's statistics know of (after ANALYZE)."""
        from django.db import connection

        with connection.cursor() as c:
            c.execute(
                "SELECT most_common_vals::text::text[], most_common_freqs FROM pg_stats "
                "WHERE schemaname = current_schema() AND tablename = %s AND attname = %s",
                [table_name, column],
            )
            row = c.fetchone()
        if not row or not row[0]:
            return None, None
        values = [v for v in row[0] if v not in ("", None)]
        if not values:
            return None, None
        return values[0], values[-1]


# Representative ranges of the numeric and date filters, by field.
NUMERIC_RANGES = {
    "points_balance": ("1000", "5000"),
    "growth_value": ("5000", "20000"),
    "lifetime_spend": ("1000", "2000"),
    "order_count": ("10", "20"),
    "amount": ("500", "1000"),
}
LEDGER_AMOUNT_RANGE = ("-500", "-100")  # debits of some size


def _date_range(field_name: str) -> tuple[str, str]:
    from datetime import timedelta

    from django.utils import timezone

    today = timezone.localdate()
    if field_name in ("expires_at", "tier_expires_at"):
        return (today + timedelta(days=30)).isoformat(), (today + timedelta(days=60)).isoformat()
    return (today - timedelta(days=60)).isoformat(), (today - timedelta(days=30)).isoformat()


def filter_scenarios(label, model_admin, changelist, base, targets) -> list[Scenario]:
    """One or two scenarios per list_filter, from the filter specs the changelist builds."""
    from django.contrib.admin import SimpleListFilter
    from unfold.contrib.filters.admin import (
        AutocompleteSelectFilter,
        BooleanRadioFilter,
        ChoicesDropdownFilter,
        FieldTextFilter,
        RangeDateFilter,
        RangeNumericFilter,
        RelatedDropdownFilter,
    )

    table_name = model_admin.model._meta.db_table
    scenarios = []

    def add(name, params):
        scenarios.append(Scenario(label, f"filter {name}", f"{base}?{urlencode(params)}"))

    for spec in changelist.filter_specs:
        params = spec.expected_parameters()
        field_path = getattr(spec, "field_path", None) or getattr(spec, "parameter_name", "?")
        try:
            if isinstance(spec, RangeDateFilter):
                start, end = _date_range(field_path)
                add(f"{field_path} {start}..{end}", {params[0]: start, params[1]: end})
            elif isinstance(spec, RangeNumericFilter):
                if field_path == "amount" and table_name == "points_pointstransaction":
                    low, high = LEDGER_AMOUNT_RANGE
                else:
                    low, high = NUMERIC_RANGES.get(field_path, ("1", "100"))
                add(f"{field_path} {low}..{high}", {params[0]: low, params[1]: high})
            elif isinstance(spec, BooleanRadioFilter):
                add(f"{field_path}=yes", {spec.lookup_kwarg: "1"})
            elif isinstance(spec, AutocompleteSelectFilter):
                related = spec.field.related_model._meta.model_name
                if related == "member":
                    add(f"{field_path}={targets.busy_member} (autocomplete, busiest member)",
                        {spec.lookup_kwarg: targets.busy_member})
                else:
                    from django.db import connection

                    with connection.cursor() as c:
                        through = spec.field.remote_field.through if spec.field.many_to_many else None
                        if through is not None:
                            column = f"{spec.field.m2m_reverse_name()}"
                            c.execute(f"SELECT {column} FROM {through._meta.db_table} GROUP BY 1 "
                                      f"ORDER BY count(*) DESC LIMIT 1")
                        else:
                            c.execute(f"SELECT id FROM {spec.field.related_model._meta.db_table} LIMIT 1")
                        row = c.fetchone()
                    if row:
                        add(f"{field_path}={row[0]} (autocomplete)", {spec.lookup_kwarg: row[0]})
            elif isinstance(spec, RelatedDropdownFilter):
                common, rare = Targets.common_and_rare(table_name, spec.field.column)
                choices = [str(pk) for pk, _ in spec.lookup_choices]
                if common is None and choices:
                    common, rare = choices[0], choices[-1]
                for what, value in (("common", common), ("rare", rare)):
                    if value is not None and (what == "common" or value != common):
                        add(f"{field_path}={value} ({what})", {spec.lookup_kwarg: value})
            elif isinstance(spec, ChoicesDropdownFilter):
                common, rare = Targets.common_and_rare(table_name, spec.field.column)
                choices = [str(v) for v, _ in spec.field.flatchoices]
                if common is None and choices:
                    common, rare = choices[0], choices[-1]
                for what, value in (("common", common), ("rare", rare)):
                    if value is not None and (what == "common" or value != common):
                        add(f"{field_path}={value} ({what})", {spec.lookup_kwarg: value})
            elif isinstance(spec, FieldTextFilter):
                common, _rare = Targets.common_and_rare(table_name, spec.field.column)
                value = (common or "London")[:4].lower()
                add(f"{field_path} contains '{value}'", {spec.lookup_kwarg: value})
            elif isinstance(spec, SimpleListFilter):  # e.g. the channel and currency dropdowns
                column = getattr(spec, "field_name", spec.parameter_name)
                common, rare = Targets.common_and_rare(table_name, column)
                values = [str(v) for v, _ in spec.lookup_choices]
                if common is None and values:
                    common, rare = values[0], values[-1]
                for what, value in (("common", common), ("rare", rare)):
                    if value is not None and (what == "common" or value != common):
                        add(f"{spec.parameter_name}={value} ({what})", {spec.parameter_name: value})
            else:
                log(f"{label}: filter {type(spec).__name__} on {field_path} has no value rule; skipped")
        except Exception as exc:  # reported, the bench goes on
            log(f"{label}: filter {field_path}: cannot build a scenario: {exc!r}")
    return scenarios


def sort_scenarios(label, changelist, base) -> list[Scenario]:
    """Every column the admin lets the operator sort, both ways (?o=N: index in the changelist's list_display,
    which starts with the action checkbox when the admin has actions)."""
    scenarios = []
    for index, name in enumerate(changelist.list_display):
        if name == "action_checkbox" or name not in changelist.sortable_by:
            continue
        ordering = changelist.get_ordering_field(name)
        if not ordering:
            continue
        shown = ordering if isinstance(ordering, str) else str(ordering)
        scenarios.append(Scenario(label, f"sort {name} ({shown}) asc", f"{base}?o={index}"))
        scenarios.append(Scenario(label, f"sort {name} ({shown}) desc", f"{base}?o=-{index}"))
    return scenarios


def _sort_index(changelist, column: str) -> int | None:
    for index, name in enumerate(changelist.list_display):
        if name != "action_checkbox" and name in changelist.sortable_by and (
            changelist.get_ordering_field(name) == column
        ):
            return index
    return None


def _supports(model_admin, prefix: str) -> bool:
    """Whether the admin's search reaches `prefix` (e.g. "member__email"): in its search_fields, or, for a member's
    field, in its member_search_fields (members.console.big_tables: the members are found first)."""
    if any(f.split("__")[0] == prefix.split("__")[0] and f.startswith(prefix) for f in model_admin.search_fields):
        return True
    if prefix.startswith("member__"):
        field = prefix.removeprefix("member__")
        return any(f.split("__")[0] == field for f in getattr(model_admin, "member_search_fields", ()))
    return False


def build_scenarios(user, targets) -> list[Scenario]:
    from django.contrib import admin
    from django.test import RequestFactory

    from members.models import Member, Order
    from points.models import PointsTransaction, Redemption

    factory = RequestFactory()
    admins = [
        ("members", Member, "/admin/members/member/"),
        ("orders", Order, "/admin/members/order/"),
        ("ledger", PointsTransaction, "/admin/points/pointstransaction/"),
        ("redemptions", Redemption, "/admin/points/redemption/"),
    ]
    scenarios: list[Scenario] = []
    t = targets
    for label, model, base in admins:
        model_admin = admin.site._registry[model]
        request = factory.get(base)
        request.user = user
        scenarios.append(Scenario(label, "first page", base))
        scenarios.append(Scenario(label, "page 50", f"{base}?p=50"))
        # The changelist as the first page builds it: its filter specs, columns and sortable columns.
        changelist = model_admin.get_changelist_instance(request)
        try:
            scenarios.extend(filter_scenarios(label, model_admin, changelist, base, t))
        except Exception as exc:
            log(f"{label}: filters: {exc!r}")
        try:
            scenarios.extend(sort_scenarios(label, changelist, base))
        except Exception as exc:
            log(f"{label}: sorts: {exc!r}")

        # The loop's values bound as defaults: both helpers are only called within this iteration.
        def search(name, term, needs=None, label=label, base=base, model_admin=model_admin):
            if needs and not _supports(model_admin, needs):
                log(f"{label}: search {name}: the admin does not search {needs}; skipped")
                return
            scenarios.append(Scenario(label, f"search {name} '{term}'", f"{base}?{urlencode({'q': term})}"))

        def combined(params, column, desc=True, changelist=changelist, label=label, base=base):
            index = _sort_index(changelist, column)
            if index is not None:
                params = {**params, "o": f"-{index}" if desc else str(index)}
            shown = ", ".join(f"{k}={v}" for k, v in params.items())
            scenarios.append(Scenario(label, f"filter + search + sort ({shown})", f"{base}?{urlencode(params)}"))

        if label == "members":
            search("name part", "anna")
            search("name part", "son")
            search("Chinese surname", "王")
            search("Chinese name", "王伟")
            search("exact email", t.email)
            search("exact phone", t.phone)
            search("exact external id", t.external_id)
            search("no match", "zzqx-nobody")
            combined({"tier__id__exact": _tier_id("silver"), "q": "son"}, "joined_at")
        elif label == "orders":
            search("order id", t.order_id)
            search("member's external id", t.busy_external_id)
            search("member's email", t.busy_email, needs="member__email")
            combined({"status__exact": "refunded", "q": t.busy_external_id}, "placed_at")
        elif label == "ledger":
            search("idempotency key", t.idempotency_key)
            search("reference (order id)", t.reference)
            search("member's external id", t.busy_external_id)
            combined({"kind__exact": "earn", "q": t.busy_external_id}, "amount")
        elif label == "redemptions":
            search("member's external id", t.redeeming_external_id)
            combined({"status__exact": "completed", "q": t.redeeming_external_id}, "created_at")
    scenarios.append(Scenario("members", f"change page (member {t.busy_member}, busiest)",
                              f"/admin/members/member/{t.busy_member}/change/", target=False))
    scenarios.append(Scenario("orders", f"change page (order {t.order_pk})",
                              f"/admin/members/order/{t.order_pk}/change/", target=False))
    scenarios.append(Scenario("site", "admin index (dashboard, figures from the cache)", "/admin/", target=False))
    # ?refresh=1 recomputes every chart on each request: what the first view costs without the warm job.
    scenarios.append(Scenario("site", "admin index (dashboard, recomputed)", "/admin/?refresh=1", target=False))
    return scenarios


def _tier_id(code: str):
    from tiers.models import Tier

    return Tier.objects.filter(code=code).values_list("pk", flat=True).first()


def run_scenario(client, scenario: Scenario, reps: int, budget: float) -> Result:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    result = Result(scenario)
    try:
        for _ in range(2):
            response = client.get(scenario.url, secure=True)
        result.status = response.status_code
        if response.status_code != 200:
            result.error = f"HTTP {response.status_code}"
        cl = (getattr(response, "context_data", None) or {}).get("cl")
        if cl is not None:
            estimate = getattr(cl.paginator, "is_estimate", False)
            lower_bound = getattr(cl.paginator, "is_lower_bound", False)  # counted up to the limit, then "more than"
            result.rows = (f"~{cl.result_count:,}" if estimate
                           else f">{cl.result_count - 1:,}" if lower_bound else f"{cl.result_count:,}")
        spent = 0.0
        for _ in range(reps):
            t0 = time.perf_counter()
            response = client.get(scenario.url, secure=True)
            elapsed = time.perf_counter() - t0
            result.latencies.append(elapsed)
            spent += elapsed
            if response.status_code != 200:
                result.status = response.status_code
                result.error = f"HTTP {response.status_code}"
            if spent > budget:
                break
        with CaptureQueriesContext(connection) as captured:
            client.get(scenario.url, secure=True)
        result.queries = len(captured.captured_queries)
        if captured.captured_queries:
            slowest = max(captured.captured_queries, key=lambda q: float(q["time"]))
            result.slowest_sql_ms = float(slowest["time"]) * 1000
            result.slowest_sql = slowest["sql"]
    except Exception as exc:  # reported, the bench goes on
        result.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc(file=sys.stderr)
    return result


def explain(result: Result) -> None:
    from django.db import connection

    if not result.slowest_sql:
        return
    print(f"\n--- EXPLAIN {result.scenario.admin}: {result.scenario.name} "
          f"(slowest statement {result.slowest_sql_ms:.1f} ms)\n{result.slowest_sql}\n", file=sys.stderr)
    try:
        with connection.cursor() as c:
            c.execute("EXPLAIN (ANALYZE, BUFFERS) " + result.slowest_sql)  # no params: % is not a placeholder
            print("\n".join(row[0] for row in c.fetchall()), file=sys.stderr, flush=True)
    except Exception as exc:
        print(f"EXPLAIN failed: {exc!r}", file=sys.stderr, flush=True)


def measure(args) -> list[Result]:
    from django.conf import settings
    from django.test import Client
    from django.test.utils import override_settings

    # The test client's host, and static files without the manifest (production's `collectstatic` manifest does not
    # exist in a checkout; looking a name up in it is a dict lookup, so the figures do not depend on it).
    warnings.filterwarnings("ignore", message="No directory at")  # whitenoise: no collectstatic in a checkout
    override_settings(
        ALLOWED_HOSTS=[*settings.ALLOWED_HOSTS, "testserver"],
        STORAGES={**settings.STORAGES,
                  "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}},
    ).enable()
    admin_user, _staff = users_create()
    client = Client()
    client.force_login(admin_user)
    targets = Targets()
    scenarios = build_scenarios(admin_user, targets)
    if args.only:
        pattern = re.compile(args.only)
        scenarios = [s for s in scenarios if pattern.search(f"{s.admin}: {s.name}")]
    results = []
    for number, scenario in enumerate(scenarios, 1):
        log(f"[{number}/{len(scenarios)}] {scenario.admin}: {scenario.name}")
        result = run_scenario(client, scenario, args.reps, args.budget)
        if result.error:
            log(f"    ERROR {result.error}")
        else:
            log(f"    p95 {result.pct(95):.0f} ms, {result.queries} queries, {result.rows} rows")
        if args.explain and scenario.target and result.verdict == "missed":
            explain(result)
        results.append(result)
    return results

