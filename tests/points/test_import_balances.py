"""Opening balances and tiers from another loyalty system (points.opening_balances.balances_import and
`manage.py import_balances`): lots with their expiry, add and overwrite modes, tiers with reason import, the same
file twice, bad rows by line, --strict, --dry-run, and the ledger's invariants after each."""
import io
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command

from members.models import ImportRowError, ImportRun, ImportRunMember, Member
from members.services import member_set_blocked, order_refund
from points import opening_balances
from points.models import PointsAllocation, PointsPolicy, PointsTransaction
from points.opening_balances import StrictStop, balances_import
from points.services import points_adjust, points_earn, points_expiry_for
from tests.clock import frozen_clock
from tiers.models import Tier, TierChange
from tiers.services import tier_override
from tiers.windows import shift

Kind = PointsTransaction.Kind
SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # 20:00 in Shanghai


@pytest.fixture
def clock(db):
    with frozen_clock(NOW) as fake:
        yield fake


def write(tmp_path, content, encoding="utf-8", name="balances.csv"):
    path = tmp_path / name
    path.write_bytes(content.encode(encoding))
    return path


def ledger_ok():
    out = io.StringIO()
    call_command("check_ledger", stdout=out, stderr=io.StringIO())  # raises CommandError on a mismatch
    return "Ledger OK" in out.getvalue()


def balance(external_id):
    member = Member.objects.get(external_id=external_id)
    return member.points_balance, member.points_pending, member.points_debt


def give(member, points, key, expires_at=None):
    points_earn(member=member, amount=points, idempotency_key=key, expires_at=expires_at)


def ledger_snapshot():
    """Every transaction as written, but `remaining` (the one column spending may change)."""
    return list(
        PointsTransaction.objects.order_by("pk").values_list(
            "pk", "member_id", "kind", "amount", "expires_at", "idempotency_key", "created_at", "debt_delta"
        )
    )


# --- add mode --------------------------------------------------------------------------------------------------------

def test_add_mode_credits_import_lots_on_top_of_the_members_balance(tmp_path, member_factory, clock):
    member = member_factory(external_id="c-1")
    give(member, 300, "before")
    path = write(tmp_path, "customer_id,points,expires_at\nc-1,100,2027-06-30\nc-1,50,2028-01-31\n")

    report = balances_import(path=path)

    assert (report.rows_read, report.created, report.duplicates, report.failed) == (2, 2, 0, 0)
    assert (report.lots_created, report.points_credited) == (2, 150)
    assert balance("c-1") == (450, 0, 0)
    lots = PointsTransaction.objects.filter(kind=Kind.IMPORT).order_by("pk")
    assert [(lot.amount, lot.remaining) for lot in lots] == [(100, 100), (50, 50)]
    assert [lot.idempotency_key for lot in lots] == [f"import:{report.run.sha256}:{line}" for line in (2, 3)]
    assert ledger_ok()


def test_a_missing_member_is_registered_with_the_files_email_phone_and_name(tmp_path, clock):
    path = write(tmp_path, "customer_id,email,phone,name,points\nc-9,fang@example.cn,13800000009,王芳,80\n")

    report = balances_import(path=path)

    assert report.members_created == 1
    member = Member.objects.get(external_id="c-9")
    assert (member.email, member.phone, member.name) == ("fang@example.cn", "+8613800000009", "王芳")
    assert member.tier.code == "member"  # joined like any new member
    assert balance("c-9") == (80, 0, 0)
    assert ledger_ok()


def test_the_profile_columns_do_not_change_an_existing_member(tmp_path, member_factory, clock):
    member_factory(external_id="c-1", name="Ann", email="ann@example.com")
    path = write(tmp_path, "customer_id,email,name,points\nc-1,other@example.com,Someone Else,10\n")

    balances_import(path=path)

    member = Member.objects.get(external_id="c-1")
    assert (member.name, member.email) == ("Ann", "ann@example.com")


def test_add_mode_pays_off_points_debt_first_like_any_credit(tmp_path, member_factory, order_factory, clock):
    member = member_factory(external_id="c-1")
    in_debt(member, order_factory)
    path = write(tmp_path, "customer_id,points\nc-1,150\n")

    balances_import(path=path)

    assert balance("c-1") == (50, 0, 0)
    assert ledger_ok()


# --- The same file again -------------------------------------------------------------------------------------------

def test_the_same_file_twice_credits_nothing_new_and_counts_duplicates(tmp_path, member_factory, clock):
    member_factory(external_id="c-1")
    path = write(tmp_path, "customer_id,points,tier\nc-1,100,silver\nc-2,40,\n")
    balances_import(path=path)
    transactions, changes = PointsTransaction.objects.count(), TierChange.objects.count()

    again = balances_import(path=path)

    assert (again.rows_read, again.created, again.duplicates, again.failed) == (2, 0, 2, 0)
    assert (again.members_created, again.lots_created, again.tiers_set) == (0, 0, 0)
    assert (PointsTransaction.objects.count(), TierChange.objects.count()) == (transactions, changes)
    assert (balance("c-1"), balance("c-2")) == ((100, 0, 0), (40, 0, 0))
    assert ImportRun.objects.get(pk=again.run.pk).duplicates == 2
    assert ledger_ok()


def test_rerunning_an_older_file_does_not_bring_back_the_tier_a_later_file_set(tmp_path, member_factory, clock):
    member_factory(external_id="c-1")
    first = write(tmp_path, "customer_id,tier\nc-1,gold\n", name="first.csv")
    balances_import(path=first)
    balances_import(path=write(tmp_path, "customer_id,tier\nc-1,silver\n", name="second.csv"))

    again = balances_import(path=first)

    assert (again.created, again.duplicates, again.tiers_set) == (0, 1, 0)
    assert Member.objects.get(external_id="c-1").tier.code == "silver"


def test_an_interrupted_import_keeps_whole_batches_and_a_rerun_completes_it(tmp_path, member_factory, monkeypatch,
                                                                            clock):
    for external_id in ("c-1", "c-2", "c-3"):
        give(member_factory(external_id=external_id), 500, f"before-{external_id}")
    path = write(tmp_path, "customer_id,points\nc-1,10\nc-2,20\nc-3,30\n")
    real_write_batch, calls = opening_balances._write_batch, []

    def killed_at_the_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real_write_batch(*args, **kwargs)

    monkeypatch.setattr(opening_balances, "_write_batch", killed_at_the_second_batch)
    with pytest.raises(RuntimeError, match="killed"):
        balances_import(path=path, mode="overwrite", batch_members=1)
    monkeypatch.undo()
    assert [balance(c)[0] for c in ("c-1", "c-2", "c-3")] == [10, 500, 500]
    assert ImportRun.objects.get().status == ImportRun.Status.FAILED

    report = balances_import(path=path, mode="overwrite", batch_members=1)

    assert (report.created, report.duplicates) == (2, 1)
    assert [balance(c)[0] for c in ("c-1", "c-2", "c-3")] == [10, 20, 30]
    assert ledger_ok()


# --- overwrite mode ------------------------------------------------------------------------------------------------

def test_overwrite_mode_ends_the_balance_exactly_at_the_files_total(tmp_path, member_factory, clock):
    member = member_factory(external_id="c-1")
    give(member, 300, "early", expires_at=datetime(2026, 6, 1, tzinfo=SHANGHAI))
    give(member, 200, "late", expires_at=datetime(2027, 6, 1, tzinfo=SHANGHAI))
    path = write(tmp_path, "customer_id,points,expires_at\nc-1,100,2027-06-30\nc-1,20,2028-06-30\n")

    report = balances_import(path=path, mode="overwrite")

    assert balance("c-1") == (120, 0, 0)
    assert (report.members_reset, report.points_removed, report.points_credited) == (1, 500, 120)
    reset = PointsTransaction.objects.get(kind=Kind.ADJUST)
    assert (reset.amount, reset.note) == (-500, "import overwrite: balance set by balances.csv")
    assert sorted(PointsAllocation.objects.filter(transaction=reset).values_list("points", flat=True)) == [-300, -200]
    assert ledger_ok()


def test_overwrite_mode_only_appends_to_the_ledger(tmp_path, member_factory, clock):
    member = member_factory(external_id="c-1")
    give(member, 300, "early")
    points_adjust(member=member, amount=-120, reason="spent", created_by=None, idempotency_key="spent")
    before = ledger_snapshot()
    path = write(tmp_path, "customer_id,points\nc-1,75\n")

    balances_import(path=path, mode="overwrite")

    after = ledger_snapshot()
    assert after[: len(before)] == before  # nothing written before was changed or deleted
    assert [(kind, amount) for _pk, _m, kind, amount, *_rest in after[len(before):]] == [
        (Kind.ADJUST, -180), (Kind.IMPORT, 75)]
    assert balance("c-1") == (75, 0, 0)
    assert ledger_ok()


def test_overwrite_mode_clears_points_debt_so_the_balance_is_the_files_total(tmp_path, member_factory, order_factory,
                                                                             clock):
    member = member_factory(external_id="c-1")
    in_debt(member, order_factory)
    path = write(tmp_path, "customer_id,points\nc-1,150\n")

    report = balances_import(path=path, mode="overwrite")

    assert balance("c-1") == (150, 0, 0)
    assert report.debt_cleared == 100
    assert ledger_ok()


def test_overwrite_with_zero_points_empties_the_balance(tmp_path, member_factory, clock):
    give(member_factory(external_id="c-1"), 300, "before")
    path = write(tmp_path, "customer_id,points\nc-1,0\n")

    report = balances_import(path=path, mode="overwrite")

    assert (report.created, report.lots_created) == (1, 0)
    assert balance("c-1") == (0, 0, 0)
    assert ledger_ok()


def test_overwrite_leaves_the_balance_of_a_member_with_a_tier_only_row(tmp_path, member_factory, clock):
    give(member_factory(external_id="c-1"), 300, "before")
    path = write(tmp_path, "customer_id,points,tier\nc-1,,silver\n")

    balances_import(path=path, mode="overwrite")

    assert balance("c-1") == (300, 0, 0)
    assert Member.objects.get(external_id="c-1").tier.code == "silver"


def test_overwrite_rerun_changes_nothing_even_after_the_member_earned_more(tmp_path, member_factory, clock):
    member = member_factory(external_id="c-1")
    give(member, 300, "before")
    path = write(tmp_path, "customer_id,points\nc-1,100\nc-1,0\n")
    balances_import(path=path, mode="overwrite")
    give(member, 40, "since")
    transactions = PointsTransaction.objects.count()

    again = balances_import(path=path, mode="overwrite")

    assert (again.created, again.duplicates, again.members_reset) == (0, 2, 0)
    assert PointsTransaction.objects.count() == transactions
    assert balance("c-1") == (140, 0, 0)
    assert ledger_ok()


def test_overwrite_rerun_does_not_reset_a_member_whose_file_total_and_balance_were_zero(tmp_path, member_factory,
                                                                                       clock):
    member = member_factory(external_id="c-1")
    path = write(tmp_path, "customer_id,points\nc-1,0\n")
    balances_import(path=path, mode="overwrite")  # nothing to take, nothing to credit: only the run remembers it
    give(member, 40, "since")

    again = balances_import(path=path, mode="overwrite")

    assert (again.created, again.duplicates, again.members_reset) == (0, 1, 0)
    assert balance("c-1") == (40, 0, 0)


def test_overwrite_rerun_finds_the_reset_in_the_ledger_when_the_run_record_is_gone(tmp_path, member_factory, clock):
    member = member_factory(external_id="c-1")
    give(member, 300, "before")
    path = write(tmp_path, "customer_id,points\nc-1,0\n")
    balances_import(path=path, mode="overwrite")
    ImportRun.objects.all().delete()
    give(member, 40, "since")

    again = balances_import(path=path, mode="overwrite")

    assert (again.created, again.duplicates, again.failed) == (0, 1, 0)
    assert balance("c-1") == (40, 0, 0)
    assert ledger_ok()


def test_overwrite_resets_a_member_once_when_their_rows_fall_in_two_batches(tmp_path, member_factory, clock):
    give(member_factory(external_id="c-1"), 300, "before-1")
    give(member_factory(external_id="c-2"), 300, "before-2")
    path = write(tmp_path, "customer_id,points\nc-1,10\nc-2,20\nc-1,5\n")

    balances_import(path=path, mode="overwrite", batch_members=1)

    assert (balance("c-1"), balance("c-2")) == ((15, 0, 0), (20, 0, 0))
    assert PointsTransaction.objects.filter(kind=Kind.ADJUST).count() == 2
    assert ledger_ok()


def test_overwrite_leaves_pending_points_pending(tmp_path, member_factory, order_factory, clock):
    PointsPolicy.objects.filter(pk=1).update(pending_days=7)
    member = member_factory(external_id="c-1")
    order_factory(customer_id="c-1", amount=Decimal("60.00"))
    give(member, 300, "before")
    path = write(tmp_path, "customer_id,points\nc-1,100\n")

    balances_import(path=path, mode="overwrite")

    assert balance("c-1") == (100, 60, 0)
    assert ledger_ok()


# --- Expiry ----------------------------------------------------------------------------------------------------------

def test_a_date_alone_expires_at_the_end_of_that_day_and_a_time_is_kept(tmp_path, member_factory, clock):
    member_factory(external_id="c-1")
    path = write(tmp_path, "customer_id,points,expires_at\nc-1,10,2027-06-30\nc-1,20,2027-06-30 18:30:00\n"
                           "c-1,30,20270101\n")

    balances_import(path=path)

    lots = PointsTransaction.objects.filter(kind=Kind.IMPORT).order_by("pk")
    assert [lot.expires_at for lot in lots] == [
        datetime(2027, 7, 1, tzinfo=SHANGHAI), datetime(2027, 6, 30, 18, 30, tzinfo=SHANGHAI),
        datetime(2027, 1, 2, tzinfo=SHANGHAI)]


def test_a_blank_expiry_takes_the_policys_expiry_counted_from_now(tmp_path, member_factory, clock):
    member_factory(external_id="c-1")
    path = write(tmp_path, "customer_id,points,expires_at\nc-1,10,\n")

    balances_import(path=path)

    assert PointsTransaction.objects.get(kind=Kind.IMPORT).expires_at == points_expiry_for(NOW)


def test_a_blank_expiry_never_expires_when_the_policy_has_no_expiry(tmp_path, member_factory, clock):
    PointsPolicy.objects.filter(pk=1).update(expiry_mode=PointsPolicy.Expiry.NEVER)
    member_factory(external_id="c-1")
    path = write(tmp_path, "customer_id,points\nc-1,10\n")

    balances_import(path=path)

    assert PointsTransaction.objects.get(kind=Kind.IMPORT).expires_at is None


def test_a_lot_whose_expiry_has_passed_is_refused_with_its_line_and_the_others_import(tmp_path, member_factory, clock):
    member_factory(external_id="c-1")
    path = write(tmp_path, "customer_id,points,expires_at\nc-1,10,2027-06-30\nc-1,99,2026-02-28\nc-1,5,\n")

    report = balances_import(path=path)

    assert (report.created, report.failed) == (2, 1)
    [(line, reference, reason)] = report.errors
    assert (line, reference) == (3, "c-1") and "is in the past" in reason
    assert balance("c-1") == (15, 0, 0)
    assert not PointsTransaction.objects.filter(kind=Kind.EXPIRE).exists()
    assert ledger_ok()


def test_the_date_format_option_reads_day_first_dates(tmp_path, member_factory, clock):
    member_factory(external_id="c-1")
    path = write(tmp_path, "customer_id,points,expires_at,tier,tier_expires_at\nc-1,10,30.06.2027,gold,31.12.2026\n")

    call_command("import_balances", str(path), "--date-format", "%d.%m.%Y", stdout=io.StringIO())

    assert PointsTransaction.objects.get(kind=Kind.IMPORT).expires_at == datetime(2027, 7, 1, tzinfo=SHANGHAI)
    assert Member.objects.get(external_id="c-1").tier_expires_at == datetime(2027, 1, 1, tzinfo=SHANGHAI)


# --- Files as other systems export them ----------------------------------------------------------------------------

def test_a_gbk_file_with_chinese_headers_imports_points_and_tiers(tmp_path, clock):
    path = write(
        tmp_path,
        "会员编号,姓名,手机号,积分,到期时间,会员等级,等级有效期至\n"
        "HY-01,王芳,13800000001,1200,2027-12-31,Gold,2026-12-31\n"
        "HY-01,王芳,13800000001,300,2026-06-30,,\n"
        "HY-02,李雷,13900000002,88,,silver,\n",
        encoding="gbk",
    )

    report = balances_import(path=path)

    assert (report.rows_read, report.created, report.failed, report.members_created) == (3, 3, 0, 2)
    wang = Member.objects.get(external_id="HY-01")
    assert (wang.name, wang.phone, wang.points_balance, wang.tier.code) == ("王芳", "+8613800000001", 1500, "gold")
    assert wang.tier_expires_at == datetime(2027, 1, 1, tzinfo=SHANGHAI)
    assert Member.objects.get(external_id="HY-02").tier.code == "silver"
    assert ledger_ok()


def test_a_tab_delimited_file_with_thousands_separators_imports(tmp_path, member_factory, clock):
    member_factory(external_id="c-1")
    path = write(tmp_path, "Member ID\tPoints Balance\tExpiry Date\nc-1\t1,250\t2027-01-31\n")

    balances_import(path=path)

    assert balance("c-1") == (1250, 0, 0)


def test_map_names_a_column_the_headers_do_not(tmp_path, member_factory, clock):
    member_factory(external_id="c-1")
    path = write(tmp_path, "卡号,可用分\nc-1,70\n")

    call_command("import_balances", str(path), "--map", "卡号=customer_id", "--map", "可用分=points",
                 stdout=io.StringIO())

    assert balance("c-1") == (70, 0, 0)


def test_a_file_without_points_or_tier_column_is_refused_whole(tmp_path, clock):
    path = write(tmp_path, "customer_id,name\nc-1,Ann\n")

    with pytest.raises(CommandError, match="No column for points or tier"):
        call_command("import_balances", str(path), stdout=io.StringIO())

    assert not ImportRun.objects.exists() and not Member.objects.exists()


# --- Bad rows --------------------------------------------------------------------------------------------------------

def test_an_unknown_tier_is_a_row_error_with_its_line_and_the_row_is_not_imported(tmp_path, member_factory, clock):
    member_factory(external_id="c-1")
    path = write(tmp_path, "customer_id,points,tier\nc-1,10,gold\nc-2,50,platinum\nc-3,5,\n")

    report = balances_import(path=path)

    assert (report.created, report.failed) == (2, 1)
    assert report.errors == [(3, "c-2", "unknown tier 'platinum'")]
    assert not Member.objects.filter(external_id="c-2").exists()
    error = ImportRowError.objects.get(run=report.run)
    assert (error.line, error.reference, error.reason) == (3, "c-2", "unknown tier 'platinum'")
    assert ledger_ok()


@pytest.mark.parametrize("row, reason", [
    ("c-1,-5,", "negative points '-5'"),
    ("c-1,12.5,", "points must be a whole number, got '12.5'"),
    ("c-1,lots,", "bad points 'lots'"),
    (",10,", "missing customer_id"),
    ("c-1,10,31/31/2027", "expires_at: bad date '31/31/2027'"),
    ("c-1,,", "nothing to import: no points and no tier"),
])
def test_a_bad_row_is_reported_with_its_reason_and_skipped(tmp_path, member_factory, clock, row, reason):
    member_factory(external_id="c-1")
    path = write(tmp_path, f"customer_id,points,expires_at\nc-1,1,\n{row}\n")

    report = balances_import(path=path)

    assert (report.created, report.failed) == (1, 1)
    assert [(line, why) for line, _reference, why in report.errors] == [(3, reason)]
    assert balance("c-1") == (1, 0, 0)


def test_a_blocked_members_points_are_refused(tmp_path, member_factory, clock):
    member_set_blocked(member=member_factory(external_id="c-1"), blocked=True, reason="fraud")
    path = write(tmp_path, "customer_id,points\nc-1,100\n")

    report = balances_import(path=path)

    assert report.failed == 1 and "blocked" in report.errors[0][2]
    assert balance("c-1") == (0, 0, 0)


def test_a_tier_set_by_hand_is_not_replaced_by_the_import(tmp_path, member_factory, clock):
    member = member_factory(external_id="c-1")
    tier_override(member=member, tier=Tier.objects.get(code="diamond"), reason="VIP")
    path = write(tmp_path, "customer_id,points,tier\nc-1,10,gold\n")

    report = balances_import(path=path)

    assert report.failed == 1 and "override" in report.errors[0][2]
    assert Member.objects.get(pk=member.pk).tier.code == "diamond"


# --- Tiers -----------------------------------------------------------------------------------------------------------

def test_a_tier_is_set_with_a_tier_change_of_reason_import_for_its_normal_validity(tmp_path, member_factory, clock):
    member_factory(external_id="c-1")
    path = write(tmp_path, "customer_id,tier\nc-1,Gold\n")

    report = balances_import(path=path)

    member = Member.objects.get(external_id="c-1")
    assert member.tier.code == "gold"
    assert member.tier_expires_at == shift(NOW, months=12)
    change = TierChange.objects.filter(member=member).latest("pk")
    assert (change.from_tier.code, change.to_tier.code, change.reason) == ("member", "gold", TierChange.Reason.IMPORT)
    assert report.tiers_set == 1


def test_an_imported_tier_ends_a_grace_period(tmp_path, member_factory, clock):
    member = member_factory(external_id="c-1")
    Member.objects.filter(pk=member.pk).update(tier=Tier.objects.get(code="gold"), tier_expires_at=NOW,
                                               tier_grace_until=datetime(2026, 4, 1, tzinfo=SHANGHAI))
    path = write(tmp_path, "customer_id,tier\nc-1,silver\n")

    balances_import(path=path)

    member.refresh_from_db()
    assert (member.tier.code, member.tier_grace_until) == ("silver", None)
    assert member.tier_expires_at == shift(NOW, months=12)


def test_the_files_tier_expiry_is_honoured(tmp_path, member_factory, clock):
    member_factory(external_id="c-1")
    path = write(tmp_path, "customer_id,tier,tier_expires_at\nc-1,silver,2026-09-15 12:00:00\n")

    balances_import(path=path)

    assert Member.objects.get(external_id="c-1").tier_expires_at == datetime(2026, 9, 15, 12, tzinfo=SHANGHAI)


def test_a_tier_without_validity_never_expires_whatever_date_the_file_gives(tmp_path, member_factory, clock):
    member_factory(external_id="c-1")
    balances_import(path=write(tmp_path, "customer_id,tier\nc-1,silver\n", name="first.csv"))
    path = write(tmp_path, "customer_id,tier,tier_expires_at\nc-1,member,2026-12-31\n")

    balances_import(path=path)

    member = Member.objects.get(external_id="c-1")
    assert (member.tier.code, member.tier_expires_at) == ("member", None)


def test_the_same_tier_already_held_writes_no_tier_change(tmp_path, member_factory, clock):
    member = member_factory(external_id="c-1")
    changes = TierChange.objects.filter(member=member).count()
    path = write(tmp_path, "customer_id,tier\nc-1,member\n")

    report = balances_import(path=path)

    assert (report.tiers_set, report.duplicates) == (0, 1)
    assert TierChange.objects.filter(member=member).count() == changes


def test_a_tier_expiry_in_the_past_is_a_row_error(tmp_path, member_factory, clock):
    member_factory(external_id="c-1")
    path = write(tmp_path, "customer_id,tier,tier_expires_at\nc-1,gold,2026-01-31\n")

    report = balances_import(path=path)

    assert report.errors == [(2, "c-1", "tier_expires_at '2026-01-31' is in the past")]
    assert Member.objects.get(external_id="c-1").tier.code == "member"


# --- The run record, dry run and strict ----------------------------------------------------------------------------

def test_the_run_is_recorded_as_a_balances_import_with_its_counts(tmp_path, member_factory, clock):
    member_factory(external_id="c-1")
    path = write(tmp_path, "customer_id,points\nc-1,10\nc-2,20\nc-3,x\n")

    report = balances_import(path=path, mode="overwrite")

    run = ImportRun.objects.get(pk=report.run.pk)
    assert (run.kind, run.status, run.file_name, run.options["mode"]) == (
        ImportRun.Kind.BALANCES, ImportRun.Status.COMPLETED, "balances.csv", "overwrite")
    assert (run.rows_read, run.created, run.duplicates, run.failed, run.members_created) == (3, 2, 0, 1, 1)
    assert run.finished_at is not None and len(run.sha256) == 64
    assert list(run.row_errors.values_list("line", "reference", "reason")) == [(4, "c-3", "bad points 'x'")]
    assert ImportRunMember.objects.filter(run=run).count() == 2


def test_a_dry_run_writes_nothing_but_reports_what_it_would_do(tmp_path, member_factory, clock):
    give(member_factory(external_id="c-1"), 300, "before")
    path = write(tmp_path, "customer_id,points,tier\nc-1,10,gold\nc-2,20,\nc-3,x,\n")
    counts = PointsTransaction.objects.count(), TierChange.objects.count(), Member.objects.count()

    report = balances_import(path=path, mode="overwrite", dry_run=True)

    assert report.dry_run and report.run is None
    assert (report.rows_read, report.created, report.failed, report.members_created) == (3, 2, 1, 1)
    assert (report.points_removed, report.points_credited, report.tiers_set) == (300, 30, 1)
    assert report.errors == [(4, "c-3", "bad points 'x'")]
    assert (PointsTransaction.objects.count(), TierChange.objects.count(), Member.objects.count()) == counts
    assert not ImportRun.objects.exists() and not ImportRowError.objects.exists()
    assert balance("c-1") == (300, 0, 0)
    assert ledger_ok()


def test_strict_stops_at_the_first_bad_row_with_nothing_written(tmp_path, member_factory, clock):
    give(member_factory(external_id="c-1"), 300, "before")
    transactions, members = PointsTransaction.objects.count(), Member.objects.count()
    path = write(tmp_path, "customer_id,points,tier\nc-1,10,gold\nc-2,20,\nc-3,5,platinum\nc-4,x,\n")

    with pytest.raises(StrictStop) as stop:
        balances_import(path=path, mode="overwrite", strict=True, batch_members=1)

    assert (stop.value.line, stop.value.reason) == (4, "unknown tier 'platinum'")
    assert (PointsTransaction.objects.count(), Member.objects.count()) == (transactions, members)
    assert Member.objects.get(external_id="c-1").tier.code == "member"
    run = ImportRun.objects.get()
    assert run.status == ImportRun.Status.FAILED and "line 4" in run.error
    assert not ImportRowError.objects.exists()
    assert ledger_ok()


def test_strict_also_stops_at_a_row_only_the_database_refuses(tmp_path, member_factory, clock):
    member_set_blocked(member=member_factory(external_id="c-2"), blocked=True, reason="fraud")
    path = write(tmp_path, "customer_id,points\nc-1,10\nc-2,20\nc-3,x\n")

    with pytest.raises(StrictStop) as stop:
        balances_import(path=path, strict=True)

    assert stop.value.line == 3 and "blocked" in stop.value.reason
    assert not PointsTransaction.objects.exists() and not Member.objects.filter(external_id="c-1").exists()


def test_the_command_with_strict_fails_with_a_command_error_and_writes_nothing(tmp_path, clock):
    path = write(tmp_path, "customer_id,points\nc-1,10\nc-2,-3\n")

    with pytest.raises(CommandError, match="line 3: negative points '-3'"):
        call_command("import_balances", str(path), "--strict", stdout=io.StringIO())

    assert not Member.objects.exists() and not PointsTransaction.objects.exists()
    assert ImportRun.objects.get().status == ImportRun.Status.FAILED


def test_the_command_prints_a_summary_with_the_failed_rows(tmp_path, member_factory, clock):
    give(member_factory(external_id="c-1"), 300, "before")
    path = write(tmp_path, "customer_id,points,tier\nc-1,100,silver\nc-2,50,\nc-3,5,platinum\n")
    out = io.StringIO()

    call_command("import_balances", str(path), "--mode", "overwrite", stdout=out)

    text = out.getvalue()
    run = ImportRun.objects.get()
    assert f"Import #{run.pk} completed (overwrite)." in text
    assert "rows read 3  ·  created 2  ·  duplicates 0  ·  failed 1  ·  members created 1" in text
    assert "points credited 150 in 2 lots  ·  tiers set 1" in text
    assert "balances reset 1 members (300 points taken, 0 points of debt cleared)" in text
    assert "line 4: c-3: unknown tier 'platinum'" in text
    assert ledger_ok()


def test_the_command_dry_run_says_nothing_was_written(tmp_path, clock):
    path = write(tmp_path, "customer_id,points\nc-1,10\n")
    out = io.StringIO()

    call_command("import_balances", str(path), "--dry-run", stdout=out)

    assert "Dry run: nothing was written." in out.getvalue()
    assert not Member.objects.exists() and not ImportRun.objects.exists()


def test_an_import_queues_no_message_or_task(tmp_path, member_factory, django_capture_on_commit_callbacks, clock):
    member_factory(external_id="c-1")
    path = write(tmp_path, "customer_id,points,tier\nc-1,100,gold\nc-2,10,silver\n")

    with django_capture_on_commit_callbacks() as callbacks:
        balances_import(path=path)

    assert callbacks == []



# --- Hostile lines: every line stored or reported, the counts add up (issue 18) -------------------------------------

def test_lines_bulk_loaders_treat_specially_are_stored_literally_or_failed_and_the_counts_add_up(tmp_path, clock):
    path = write_bytes(tmp_path, b"customer_id,name,points\n"
                                 b"c-1,\\N,10\n"
                                 b"\\.\n"
                                 b"\r\n"
                                 b'"c-2,Bob,20\n'
                                 b"c-3,back\\slash,30\r\n"
                                 b",,\n"
                                 b"c-4,Di\rx,40\n"
                                 b"c-5,Ed,50")

    report = balances_import(path=path)

    assert (report.rows_read, report.created, report.duplicates, report.failed) == (6, 3, 0, 3)
    assert [line for line, _reference, _reason in report.errors] == [3, 5, 8]
    assert Member.objects.get(external_id="c-1").name == "\\N"
    assert Member.objects.get(external_id="c-3").name == "back\\slash"
    assert (balance("c-1"), balance("c-3"), balance("c-5")) == ((10, 0, 0), (30, 0, 0), (50, 0, 0))
    assert ledger_ok()


def test_invalid_bytes_under_an_explicit_encoding_fail_their_line_instead_of_importing_replacement_characters(
    tmp_path, clock
):
    path = write_bytes(tmp_path, "customer_id,name,points\nc-1,王芳,10\n".encode("gbk")
                       + b"c-2,\xff\xfe,20\n" + "c-3,李雷,30\n".encode("gbk"))

    report = balances_import(path=path, encoding="gbk")

    assert (report.rows_read, report.created, report.failed) == (3, 2, 1)
    assert report.errors[0][0] == 3 and "gbk" in report.errors[0][2]
    assert not Member.objects.filter(name__contains="\ufffd").exists()


@pytest.mark.parametrize("row", ["c-1,{huge}", "c-1,10,{huge}", "c-1,,,{huge}", "c-1,10,,gold,{huge}"])
def test_a_megabyte_cell_is_quoted_in_the_row_error_at_most_a_few_hundred_characters(tmp_path, clock, row):
    path = write(tmp_path, "customer_id,points,expires_at,tier,tier_expires_at\n" + row.format(huge="9" * (1 << 20))
                 + "\n")

    report = balances_import(path=path)

    assert report.failed == 1
    assert len(report.errors[0][2]) < 600
    assert len(ImportRowError.objects.get(run=report.run).reason) < 600


def write_bytes(tmp_path, content, name="balances.csv"):
    path = tmp_path / name
    path.write_bytes(content)
    return path

# --- Helpers ---------------------------------------------------------------------------------------------------------

def in_debt(member, order_factory):
    """100 points of debt: an order's 100 points are spent, then the order is refunded in full."""
    order = order_factory(customer_id=member.external_id, amount=Decimal("100.00"))
    points_adjust(member=member, amount=-100, reason="spent", created_by=None, idempotency_key=f"spent-{member.pk}")
    order_refund(order_id=order.order_id, refund_id=f"refund-{member.pk}", amount=Decimal("100.00"))
    assert balance(member.external_id) == (0, 0, 100)
