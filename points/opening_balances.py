"""Opening points balances and tiers from another loyalty system: `balances_import()`, behind
`manage.py import_balances`, so a brand can switch systems without members losing anything.

The file (CSV/TSV, read by members.importing.reading: encodings, delimiter, headers in English or Chinese, --map,
dates) has one row per *lot*: `customer_id` (required), `points` (a whole number >= 0), `expires_at`, `tier`,
`tier_expires_at`, and `email`/`phone`/`name` (used only when the member has to be created). A member may have
several rows (several lots with different expiry dates).

Rows are streamed and written in batches of about a thousand members, each batch one transaction with its members
locked (`member_lock`, in primary-key order). Per member, in file order:

- **Members** missing are registered through `members.services.member_register` (the member import's path: they
  join on the entry tier as any new member does).
- **Points**: each row with points > 0 opens one IMPORT lot through the ledger's own `lot_open`, expiring at the
  row's `expires_at`, or by the points policy counted from now when it is blank (never, if the policy never
  expires), keyed `import:<sha256 of the file>:<line>`: running the same file again credits nothing (the rows
  count as duplicates), and a killed run resumes where it stopped.
  A date without a time means "valid through that day": the points expire at the next local midnight.
  A lot whose expiry has already passed is refused as a row error (expired points are not an opening balance, and a
  past date is far more often a day/month mix-up worth seeing than a real lot), so the balance is exactly what the
  file says and nothing is issued only to expire in the same second.
- **add** mode: the lots are added to what the member has (like any credit, they pay off points debt first).
  **overwrite** mode: the member's available balance ends equal to the file's total for them. Before the first lot,
  `points_adjust` (an ADJUST debit, reason "import overwrite", drawn from the lots first-expiring-first, so the
  ledger stays append-only and traced) takes the available balance (after settling due expiry and releases) to 0,
  and outstanding points debt is cleared by an ADJUST credit that only pays the debt. Pending points (orders still
  inside their return window) are left alone: they become available when their window ends. The reset happens once
  per file and member: a rerun (or a member's rows in a later batch) finds the file's own ledger entries or the
  ImportRunMember rows of a run of the same file and changes nothing. Only members with at least one points cell
  (0 included) are reset; a row with a tier only leaves the balance alone.
- **Tiers**: a row with a tier (code or name) sets it with a TierChange of reason `import`, valid until
  `tier_expires_at` (date alone: through that day) or, when blank, for the tier's normal validity from now (the
  ladder's `validity_months`, as an upgrade would start it); a tier without validity never expires (a date given
  for it is ignored: the tier rules would clear it at the next evaluation). The member already on that tier: no
  change and no TierChange. A member whose tier is set by hand (staff override) is refused for the tier: end the
  override first. Each change is referenced `import:<sha256 prefix>:<line>`, so a rerun does not repeat it even
  when the member's tier has moved since. When a member's rows name different tiers, each is applied in file
  order: the last one wins.
- A blocked member's points rows are refused (blocked members earn no points).

Every run is an ImportRun of kind `balances` (counts, options, status, who), bad rows are ImportRowErrors (line,
customer id, reason): the lifecycle members.importing.lifecycle holds for the order import too. `created` counts rows that wrote something (a lot, a reset, a tier); `duplicates` the rows
that wrote nothing new (already imported by an earlier run of the same file, or already as the file says).
ImportRunMember lists, for a balances run, the members whose points it set. `strict` stops at the first bad row
with nothing written but the ImportRun (marked failed); `dry_run` runs everything in a transaction that is rolled
back (not even the ImportRun stays) and reports the counts. Nothing here sends a message or queues a task.
"""
import functools
import re
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from members.errors import DomainError
from members.importing.lifecycle import (
    ERRORS_KEPT_IN_REPORT,
    ImportProgress,
    ImportReport,
    StrictStop,
    file_sha256,
    import_row_errors_write,
    import_run_count,
    import_run_execute,
)
from members.importing.reading import HEADER_NAMES as ORDER_HEADER_NAMES
from members.importing.reading import (
    ID_MAX_LENGTH,
    TEXT_MAX_LENGTHS,
    ImportFileError,
    ImportRow,
    headers_shown,
    inspect_file,
    parse_block,
    parse_placed_at,
    read_blocks,
    shown,
)
from members.models import ImportRun, ImportRunMember, Member
from members.services import history_importing, member_lock, member_register
from tiers.models import Tier, TierChange
from tiers.selectors import tier_ladder
from tiers.services import tier_import
from tiers.windows import local_midnight

from .ledger import lot_open, member_settle
from .models import PointsTransaction
from .services import points_adjust, points_expiry_for

ADD, OVERWRITE = "add", "overwrite"
MODES = (ADD, OVERWRITE)
BATCH_MEMBERS = 1_000  # members per transaction
BATCH_ROWS = 20_000  # and at most this many rows, should a few members have very many lots
POINTS_LIMIT = 10**12

FIELDS = ("customer_id", "email", "phone", "name", "points", "expires_at", "tier", "tier_expires_at")
REQUIRED = ("customer_id",)
# Compared as reading.py compares headers: lower case, without spaces, underscores, dashes, dots and brackets.
HEADER_NAMES = {
    "customer_id": ORDER_HEADER_NAMES["customer_id"],
    "email": ORDER_HEADER_NAMES["email"],
    "phone": ORDER_HEADER_NAMES["phone"],
    "name": ORDER_HEADER_NAMES["name"],
    "points": ["points", "point", "pointsbalance", "balance", "availablepoints", "openingbalance", "积分", "积分余额",
               "可用积分", "当前积分", "剩余积分", "积分数", "积分数量"],
    "expires_at": ["expiresat", "expires", "expiry", "expirydate", "expireson", "expiredate", "expiration",
                   "expirationdate", "validuntil", "pointsexpiry", "pointsexpiresat", "到期时间", "到期日", "到期日期",
                   "过期时间", "过期日期", "有效期至", "积分有效期", "积分到期时间", "积分过期时间"],
    "tier": ["tier", "tiercode", "tiername", "level", "memberlevel", "membershiplevel", "grade", "等级", "会员等级",
             "会员级别", "级别", "等级名称"],
    "tier_expires_at": ["tierexpiresat", "tierexpiry", "tiervaliduntil", "levelexpiry", "levelexpiresat",
                        "等级有效期", "等级有效期至", "等级到期时间", "等级过期时间"],
}

_POINTS_NOISE = re.compile(r"[\s,，_]")
_DATE_ONLY = re.compile(r"^[0-9]{4}[-/][0-9]{1,2}[-/][0-9]{1,2}$|^[0-9]{8}$")
_TIME_DIRECTIVES = re.compile(r"%[HIMSfpXcTRrzZ]")


# --- Reading ---------------------------------------------------------------------------------------------------------

def parse_points(text: str) -> int:
    """A whole number of points >= 0; thousands separators are allowed, and so is "120.0" (spreadsheets)."""
    cleaned = _POINTS_NOISE.sub("", text or "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"bad points {shown(text)}") from None
    if not value.is_finite():
        raise ValueError(f"bad points {shown(text)}")
    if value < 0:
        raise ValueError(f"negative points {shown(text)}")
    if value != value.to_integral_value():
        raise ValueError(f"points must be a whole number, got {shown(text)}")
    if value >= POINTS_LIMIT:
        raise ValueError(f"points too large {shown(text)}")
    return int(value)


def parse_until(text: str, date_format: str | None = None) -> datetime:
    """An expiry: the first moment the points (or the tier) no longer hold. A date without a time means "valid through
    that day", so it ends at the next local midnight; a date-time is taken as it is."""
    moment = parse_placed_at(text, date_format)
    date_only = (not _TIME_DIRECTIVES.search(date_format)) if date_format else bool(_DATE_ONLY.match(text.strip()))
    if date_only:
        return local_midnight(timezone.localtime(moment).date() + timedelta(days=1))
    return moment


def _tier_key(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip()).lower()


def _tiers_by_key(tiers: list[Tier]) -> dict[str, Tier]:
    """Tiers by code and by name, case-insensitive; a code wins over another tier's name."""
    index = {_tier_key(tier.name): tier for tier in tiers}
    index.update({_tier_key(tier.code): tier for tier in tiers})
    return index


def _row_parser(*, tiers: dict[str, Tier], now: datetime, default_expiry: datetime | None):
    """parse_row for reading.parse_block: one balances row -> ImportRow (values parsed, or the reasons it is bad)."""

    def parse(line: int, cells: list[str], columns: dict[str, int], date_format: str | None) -> ImportRow:
        row = ImportRow(line=line)
        raw = {name: (cells[index].strip() if index < len(cells) else "") for name, index in columns.items()}
        customer_id = raw.get("customer_id", "")
        if not customer_id:
            row.errors.append("missing customer_id")
        elif len(customer_id) > ID_MAX_LENGTH:
            row.errors.append(f"customer_id longer than {ID_MAX_LENGTH} characters")
        row.values["customer_id"] = customer_id

        points_text, points, expires_at = raw.get("points", ""), None, default_expiry
        if points_text:
            try:
                points = parse_points(points_text)
            except ValueError as error:
                row.errors.append(str(error))
            if raw.get("expires_at"):
                try:
                    expires_at = parse_until(raw["expires_at"], date_format)
                except ValueError as error:
                    row.errors.append(f"expires_at: {error}")
                else:
                    if points and expires_at <= now:
                        row.errors.append(f"expires_at {shown(raw['expires_at'])} is in the past: expired points are "
                                          "not an opening balance")
        row.values["points"], row.values["expires_at"] = points, expires_at

        tier_text, tier, tier_until = raw.get("tier", ""), None, None
        if tier_text:
            tier = tiers.get(_tier_key(tier_text))
            if tier is None:
                row.errors.append(f"unknown tier {shown(tier_text)}")
            if raw.get("tier_expires_at"):
                try:
                    tier_until = parse_until(raw["tier_expires_at"], date_format)
                except ValueError as error:
                    row.errors.append(f"tier_expires_at: {error}")
                else:
                    if tier_until <= now:
                        row.errors.append(f"tier_expires_at {shown(raw['tier_expires_at'])} is in the past")
        row.values["tier"], row.values["tier_expires_at"] = tier, tier_until

        if not points_text and not tier_text:
            row.errors.append("nothing to import: no points and no tier")
        for name in ("email", "phone", "name"):
            row.values[name] = raw.get(name, "")[: TEXT_MAX_LENGTHS[name]]
        return row

    return parse


# --- The run ---------------------------------------------------------------------------------------------------------

@dataclass
class BalancesReport(ImportReport):
    """An ImportReport (rows read, created, duplicates, failed, members created, errors) plus what the rows did."""

    mode: str = ADD
    lots_created: int = 0
    points_credited: int = 0
    members_reset: int = 0  # overwrite: members whose balance or debt had to be taken to 0 first
    points_removed: int = 0
    debt_cleared: int = 0
    tiers_set: int = 0

    def add(self, batch: "BalancesReport") -> None:
        super().add(batch)
        for name in ("lots_created", "points_credited", "members_reset", "points_removed", "debt_cleared",
                     "tiers_set"):
            setattr(self, name, getattr(self, name) + getattr(batch, name))


@dataclass
class _Context:
    sha256: str
    mode: str
    now: datetime
    file_name: str
    user: object
    batch_members: int
    run_id: int | None = None
    started: float = 0.0
    on_progress: object = None

    @property
    def key_prefix(self) -> str:
        """Every ledger entry a file writes starts with this: its lots, and its overwrite resets."""
        return f"import:{self.sha256}:"

    def tier_reference(self, line: int) -> str:
        return f"import:{self.sha256[:32]}:{line}"  # TierChange.reference holds 64 characters


def balances_import(
    *,
    path: str | Path,
    file_name: str | None = None,
    mode: str = ADD,
    encoding: str = "auto",
    mapping: dict[str, str] | None = None,
    date_format: str | None = None,
    dry_run: bool = False,
    strict: bool = False,
    user=None,
    source: str = ImportRun.Source.COMMAND,
    batch_members: int = BATCH_MEMBERS,
    on_progress=None,
) -> BalancesReport:
    """Import opening balances and tiers (see the module docstring). Raises ImportFileError when the file as a whole
    cannot be read (nothing is written then), and StrictStop under `strict` at the first bad row (nothing is written
    but the ImportRun, marked failed; in a dry run, nothing at all)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    path = Path(path)
    layout = inspect_file(path, encoding=encoding, mapping=mapping, fields=FIELDS, required=REQUIRED,
                          header_names=HEADER_NAMES)
    if "points" not in layout.columns and "tier" not in layout.columns:
        raise ImportFileError(
            _("No column for points or tier (headers: %(headers)s); name one with --map SRC=FIELD.")
            % {"headers": headers_shown(layout.headers)}
        )
    now = timezone.now()
    context = _Context(sha256=file_sha256(path), mode=mode, now=now, file_name=(file_name or path.name)[:255],
                       user=user, batch_members=max(batch_members, 1), started=time.monotonic(),
                       on_progress=on_progress)
    parse_row = _row_parser(tiers=_tiers_by_key(tier_ladder()), now=now, default_expiry=points_expiry_for(now))
    options = {"mode": mode, "encoding": layout.encoding, "delimiter": layout.delimiter, "mapping": mapping or {},
               "date_format": date_format or "", "strict": strict}
    run_fields = {"kind": ImportRun.Kind.BALANCES, "source": source, "file_name": context.file_name,
                  "sha256": context.sha256, "options": options, "created_by": user}

    def work(run_id: int, report: BalancesReport) -> None:
        context.run_id = run_id
        # Under --strict every row is in one transaction (a dry run is already inside the one it rolls back).
        with transaction.atomic() if strict and not dry_run else nullcontext():
            with history_importing():  # registered members get no welcome, nothing is messaged
                _rows_phase(path, layout, date_format, parse_row, context, report, strict=strict)
        report.rows_seconds = time.monotonic() - context.started

    return import_run_execute(fields=run_fields, new_report=functools.partial(BalancesReport, mode=mode), work=work,
                              dry_run=dry_run)


def _rows_phase(path, layout, date_format, parse_row, context: _Context, report: BalancesReport,
                strict: bool) -> None:
    """Stream the rows into batches of about `batch_members` members, in file order. A member whose rows lie far
    apart in the file may be written in two batches, which the per-line keys and the once-per-file reset make
    harmless."""
    pending: list[ImportRow] = []
    customers: set[str] = set()

    def flush() -> None:
        if pending:
            report.add(_write_batch(context, pending, strict=strict))
            pending.clear()
            customers.clear()

    for first_line, end, block in read_blocks(path, layout):
        for row in parse_block(block, first_line, layout, date_format, parse_row=parse_row):
            if strict and not row.ok:
                flush()  # an earlier line may fail on what only the database knows (a blocked member...)
                raise StrictStop(row.line, "; ".join(row.errors))
            customer_id = row.values.get("customer_id", "")
            if len(pending) >= BATCH_ROWS or (
                customer_id not in customers and len(customers) >= context.batch_members
            ):
                flush()
            pending.append(row)
            if row.ok:
                customers.add(customer_id)
        if context.on_progress is not None:
            context.on_progress(ImportProgress("rows", report.rows_read + len(pending), None, end, layout.size,
                                               time.monotonic() - context.started))
    flush()


# --- One batch -------------------------------------------------------------------------------------------------------

@dataclass
class _MemberOutcome:
    created_lines: set[int] = field(default_factory=set)
    points_applied: bool = False
    lots_created: int = 0
    points_credited: int = 0
    reset: bool = False
    points_removed: int = 0
    debt_cleared: int = 0
    tiers_set: int = 0


def _write_batch(context: _Context, rows: list[ImportRow], *, strict: bool) -> BalancesReport:
    """One transaction: create the missing members, lock the batch's members in id order, apply each member's rows,
    record the failed rows, the members whose points were set, and the counts on the ImportRun."""
    batch = BalancesReport(run=None, mode=context.mode, rows_read=len(rows))
    failures: dict[int, tuple[str, str]] = {}  # line -> (customer id, reason)
    by_customer: dict[str, list[ImportRow]] = {}
    for row in rows:
        if row.ok:
            by_customer.setdefault(row.values["customer_id"], []).append(row)
        else:
            failures[row.line] = (row.values.get("customer_id", ""), "; ".join(row.errors))

    def fail(member_rows, reason):
        for row in member_rows:
            failures[row.line] = (row.values["customer_id"], reason)

    with transaction.atomic():
        members = {m.external_id: m for m in Member.objects.filter(external_id__in=list(by_customer))}
        for customer_id, member_rows in by_customer.items():
            if customer_id in members:
                continue
            try:
                with transaction.atomic():
                    member, created = member_register(external_id=customer_id, **_profile(member_rows))
            except (DomainError, IntegrityError) as error:
                fail(member_rows, f"member could not be created: {error}")
                continue
            members[customer_id] = member
            batch.members_created += int(created)

        # Lock in primary-key order, as every writer of several members does, so two writers cannot deadlock.
        ordered = sorted((members[c] for c in by_customer if c in members), key=lambda member: member.pk)
        for member in ordered:
            member_lock(member)
        ids = [member.pk for member in ordered]
        # What this file already wrote for these members: its lots (by line) and resets, in earlier runs or batches.
        written = list(
            PointsTransaction.objects.filter(member_id__in=ids, idempotency_key__startswith=context.key_prefix)
            .values_list("member_id", "idempotency_key")
        )
        file_keys = {key for _member_id, key in written}
        file_marked = {member_id for member_id, _key in written}
        set_by_file = set(
            ImportRunMember.objects.filter(
                member_id__in=ids, run__kind=ImportRun.Kind.BALANCES, run__sha256=context.sha256
            ).values_list("member_id", flat=True)
        )
        tier_references = set(
            TierChange.objects.filter(
                member_id__in=ids, reason=TierChange.Reason.IMPORT,
                reference__startswith=context.tier_reference(0)[:-1],
            ).values_list("member_id", "reference")
        )

        points_set: list[int] = []
        for member in ordered:
            member_rows = []
            for row in by_customer[member.external_id]:
                refusal = _refusal(member, row)
                if refusal:
                    failures[row.line] = (member.external_id, refusal)
                else:
                    member_rows.append(row)
            if not member_rows:
                continue
            try:
                with transaction.atomic():
                    outcome = _apply_member(
                        context, member, member_rows, file_keys=file_keys,
                        reset_done=member.pk in file_marked or member.pk in set_by_file,
                        tier_references=tier_references,
                    )
            except (DomainError, IntegrityError) as error:
                member.refresh_from_db()
                fail(member_rows, f"not imported: {error}")
                continue
            batch.created += len(outcome.created_lines)
            batch.duplicates += len(member_rows) - len(outcome.created_lines)
            for name in ("lots_created", "points_credited", "points_removed", "debt_cleared", "tiers_set"):
                setattr(batch, name, getattr(batch, name) + getattr(outcome, name))
            batch.members_reset += int(outcome.reset)
            if outcome.points_applied:
                points_set.append(member.pk)

        if strict and failures:
            line = min(failures)
            raise StrictStop(line, failures[line][1])
        batch.failed = len(failures)
        batch.errors = [(line, *failures[line]) for line in sorted(failures)[:ERRORS_KEPT_IN_REPORT]]
        ImportRunMember.objects.bulk_create(
            [ImportRunMember(run_id=context.run_id, member_id=member_id) for member_id in points_set],
            ignore_conflicts=True,
        )
        import_row_errors_write(
            run_id=context.run_id,
            failures=[(line, reference, reason) for line, (reference, reason) in sorted(failures.items())],
        )
        import_run_count(run_id=context.run_id, batch=batch)
    return batch


def _profile(rows: list[ImportRow]) -> dict:
    """The first email, phone and name the member's rows give (blank cells leave a field unset)."""
    profile = {}
    for name in ("email", "phone", "name"):
        value = next((row.values[name] for row in rows if row.values.get(name)), "")
        if value:
            profile[name] = value
    return profile


def _refusal(member: Member, row: ImportRow) -> str | None:
    """Why a well-formed row cannot apply to this member, or None."""
    if row.values["points"] is not None and member.is_blocked:
        return f"member {member.external_id} is blocked: blocked members earn no points"
    if row.values["tier"] is not None and member.tier_overridden and member.tier_id != row.values["tier"].pk:
        return f"member {member.external_id}'s tier is set by hand (override): end the override first"
    return None


def _apply_member(context: _Context, member: Member, rows: list[ImportRow], *, file_keys: set[str],
                  reset_done: bool, tier_references: set[tuple[int, str]]) -> _MemberOutcome:
    """A locked member's rows, in file order: the overwrite reset (once per file), then each row's lot and tier."""
    outcome = _MemberOutcome()
    points_rows = [row for row in rows if row.values["points"] is not None]
    outcome.points_applied = bool(points_rows)
    if context.mode == OVERWRITE and points_rows and not reset_done and _balance_reset(context, member, outcome):
        outcome.created_lines.add(points_rows[0].line)
    for row in rows:
        values = row.values
        key = f"{context.key_prefix}{row.line}"
        if values["points"] and key not in file_keys:
            lot_open(
                member=member,
                amount=values["points"],
                kind=PointsTransaction.Kind.IMPORT,
                reference=f"import #{context.run_id}",
                idempotency_key=key,
                expires_at=values["expires_at"],
                created_by=context.user,
                note=f"opening balance: {context.file_name}, line {row.line}",
            )
            outcome.lots_created += 1
            outcome.points_credited += values["points"]
            outcome.created_lines.add(row.line)
        tier = values["tier"]
        reference = context.tier_reference(row.line)
        if tier is not None and tier.pk != member.tier_id and (member.pk, reference) not in tier_references:
            tier_import(member=member, tier=tier, until=values["tier_expires_at"], reference=reference,
                        note=f"opening tier: {context.file_name}, line {row.line} (import #{context.run_id})",
                        now=context.now, user=context.user)
            outcome.tiers_set += 1
            outcome.created_lines.add(row.line)
    return outcome


def _balance_reset(context: _Context, member: Member, outcome: _MemberOutcome) -> bool:
    """Overwrite mode: take the member's available balance to 0 and clear their points debt, through points_adjust
    (append-only ADJUST transactions with the reason and who), before the file's lots go in."""
    member_settle(member, timezone.now())  # what is due to expire or be released first: the balance is then current
    balance, debt = member.points_balance, member.points_debt
    reason = f"import overwrite: balance set by {context.file_name}"
    if balance:
        points_adjust(member=member, amount=-balance, reason=reason, created_by=context.user,
                      idempotency_key=f"{context.key_prefix}overwrite:{member.pk}")
    if debt:
        points_adjust(member=member, amount=debt, reason=f"{reason} (points debt cleared)", created_by=context.user,
                      idempotency_key=f"{context.key_prefix}overwrite-debt:{member.pk}")
    outcome.reset = bool(balance or debt)
    outcome.points_removed, outcome.debt_cleared = balance, debt
    return outcome.reset


__all__ = ["ADD", "FIELDS", "HEADER_NAMES", "MODES", "OVERWRITE", "BalancesReport", "ImportFileError", "StrictStop",
           "balances_import", "parse_points", "parse_until"]
