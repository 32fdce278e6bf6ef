"""Members, their purchase history and the storefront's API keys.

Member carries denormalised balances owned by the higher apps: `points_*` columns are written only by
`points.services`, `tier*`/`growth_value`/`window_*` only by `tiers.services`, always with the member row
locked. The database refuses negative balances whatever the code does.
"""
from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Upper
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy
from rest_framework_api_key.models import AbstractAPIKey

from .identifiers import IDENTIFIER_MAX_LENGTH, validate_identifier
from .limits import birthday_validator


class RfmSegment(models.TextChoices):
    """The named RFM segments; members.rfm.SEGMENT_GRID says which (recency, frequency-monetary) scores make each."""

    CHAMPIONS = "champions", _("champions")
    LOYAL = "loyal", _("loyal")
    POTENTIAL_LOYALISTS = "potential_loyalists", _("potential loyalists")
    NEW_CUSTOMERS = "new_customers", _("new customers")
    PROMISING = "promising", _("promising")
    NEED_ATTENTION = "need_attention", _("need attention")
    ABOUT_TO_SLEEP = "about_to_sleep", _("about to sleep")
    AT_RISK = "at_risk", _("at risk")
    CANT_LOSE = "cant_lose", _("can't lose them")
    HIBERNATING = "hibernating", _("hibernating")
    LOST = "lost", _("lost")


class ActivityStatus(models.TextChoices):
    """Where a member stands by their last order (members.rfm.activity_status_sql has the rule)."""

    # "active" as in "an active member" (活跃), not a switch that is on (启用): a context keeps the two apart.
    ACTIVE = "active", pgettext_lazy("member activity", "active")
    DORMANT = "dormant", _("dormant")
    CHURN_RISK = "churn_risk", _("churn risk")
    NO_PURCHASE = "no_purchase", _("no purchase yet")


class MonthOf(models.Func):
    """The month (1-12) of a date column, in a form both databases accept in a stored generated column and an index
    (not Django's __month lookup, which is a Python function on SQLite). Dates are ISO text on SQLite."""

    arity = 1
    output_field = models.PositiveSmallIntegerField()

    def as_sql(self, compiler, connection, **extra_context):
        return super().as_sql(compiler, connection, template="CAST(EXTRACT(MONTH FROM %(expressions)s) AS smallint)")

    def as_sqlite(self, compiler, connection, **extra_context):
        return super().as_sql(compiler, connection, template="CAST(substr(%(expressions)s, 6, 2) AS integer)")


class Member(models.Model):
    RfmSegment = RfmSegment
    ActivityStatus = ActivityStatus

    # Validators check what is created (admin, imports); members stored before the character set keep their id.
    external_id = models.CharField(
        _("storefront customer id"), max_length=IDENTIFIER_MAX_LENGTH, unique=True,
        help_text=_("The customer's id in the shop system."), validators=[validate_identifier],
    )
    email = models.EmailField(_("email"), blank=True)
    phone = models.CharField(_("phone"), max_length=32, blank=True)
    name = models.CharField(_("name"), max_length=150, blank=True)
    birthday = models.DateField(_("birthday"), null=True, blank=True, validators=[birthday_validator])
    region = models.CharField(_("region"), max_length=64, blank=True)
    joined_at = models.DateTimeField(_("joined at"), default=timezone.now)

    # Marketing consents per channel; messages (campaigns) respect them.
    email_opt_in = models.BooleanField(_("email marketing consent"), default=False)
    sms_opt_in = models.BooleanField(_("SMS marketing consent"), default=False)
    consents_updated_at = models.DateTimeField(_("consents updated at"), null=True, blank=True)

    referral_code = models.CharField(_("referral code"), max_length=16, unique=True)
    referred_by = models.ForeignKey(
        "self", verbose_name=_("referred by"), null=True, blank=True, on_delete=models.SET_NULL, related_name="referrals"
    )

    tier = models.ForeignKey(
        "tiers.Tier", verbose_name=_("tier"), null=True, blank=True, on_delete=models.PROTECT, related_name="members"
    )
    tier_expires_at = models.DateTimeField(_("tier expires at"), null=True, blank=True)
    # Set when the validity ended without re-qualifying and the programme grants a grace period: the tier is kept
    # until then, and the member is told what is missing.
    tier_grace_until = models.DateTimeField(_("tier grace until"), null=True, blank=True)
    # A staff override pins the tier until tier_override_until (never, when empty); then normal rules resume.
    tier_overridden = models.BooleanField(_("tier set by staff"), default=False, db_default=False)
    tier_override_until = models.DateTimeField(_("override ends at"), null=True, blank=True)
    tier_override_reason = models.CharField(_("override reason"), max_length=200, blank=True, db_default="")
    # The tier and validity the member had earned when the override began: when it ends, that earned state resumes
    # (or what they qualify for then, if higher).
    tier_before_override = models.ForeignKey(
        "tiers.Tier", verbose_name=_("tier before the override"), null=True, blank=True, on_delete=models.PROTECT,
        related_name="+",
    )
    tier_expires_before_override = models.DateTimeField(_("its validity"), null=True, blank=True)
    # Sums of the growth events inside the qualification window, as of the member's last evaluation.
    growth_value = models.BigIntegerField(_("growth value"), default=0)
    # Database defaults too: bulk loaders (bench, import) insert members with plain SQL.
    window_spend = models.DecimalField(_("spend in window"), max_digits=14, decimal_places=2, default=0, db_default=0)
    window_orders = models.PositiveIntegerField(_("orders in window"), default=0, db_default=0)

    points_balance = models.BigIntegerField(_("available points"), default=0)
    points_pending = models.BigIntegerField(_("pending points"), default=0)
    points_debt = models.BigIntegerField(_("points debt"), default=0)

    # A blocked member (fraud, abuse) keeps their history but earns and spends nothing until unblocked.
    is_blocked = models.BooleanField(_("blocked"), default=False)
    blocked_reason = models.CharField(_("blocked because"), max_length=200, blank=True)

    lifetime_spend = models.DecimalField(_("lifetime spend"), max_digits=14, decimal_places=2, default=0)
    order_count = models.PositiveIntegerField(pgettext_lazy("count label", "orders"), default=0)
    first_order_at = models.DateTimeField(_("first order at"), null=True, blank=True)
    last_order_at = models.DateTimeField(_("last order at"), null=True, blank=True)

    # RFM scores (1-5, quintiles among the members with an order; 5 = most recent / most orders / highest spend),
    # the named segment of the (recency, frequency-monetary) grid and the activity status: written only by
    # members.rfm (the nightly members.refresh_rfm job, after each order import; an order makes its member active at
    # once). Empty until the first refresh; members who never ordered have no scores. Database defaults: bulk
    # loaders (bench, import) insert members with plain SQL.
    rfm_recency = models.PositiveSmallIntegerField(_("recency score"), null=True, blank=True)
    rfm_frequency = models.PositiveSmallIntegerField(_("frequency score"), null=True, blank=True)
    rfm_monetary = models.PositiveSmallIntegerField(_("monetary score"), null=True, blank=True)
    rfm_segment = models.CharField(
        _("RFM segment"), max_length=24, choices=RfmSegment.choices, blank=True, default="", db_default=""
    )
    activity_status = models.CharField(
        _("activity"), max_length=16, choices=ActivityStatus.choices, default=ActivityStatus.NO_PURCHASE,
        db_default=ActivityStatus.NO_PURCHASE,
    )
    rfm_updated_at = models.DateTimeField(_("RFM last changed"), null=True, blank=True)
    # The birthday's month, computed by the database (a stored generated column): segments filter on it through a
    # plain index on both databases, and no write path has to remember to fill it.
    birthday_month = models.GeneratedField(
        expression=MonthOf("birthday"), output_field=models.PositiveSmallIntegerField(), db_persist=True,
        verbose_name=_("birthday month"),
    )
    tags = models.ManyToManyField("Tag", verbose_name=_("tags"), blank=True, related_name="members")

    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("member")
        verbose_name_plural = _("members")
        ordering = ["-joined_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(points_balance__gte=0), name="member_points_balance_non_negative"),
            models.CheckConstraint(condition=Q(points_pending__gte=0), name="member_points_pending_non_negative"),
            models.CheckConstraint(condition=Q(points_debt__gte=0), name="member_points_debt_non_negative"),
            models.CheckConstraint(condition=Q(growth_value__gte=0), name="member_growth_value_non_negative"),
            models.CheckConstraint(condition=Q(window_spend__gte=0), name="member_window_spend_non_negative"),
            models.CheckConstraint(condition=Q(lifetime_spend__gte=0), name="member_lifetime_spend_non_negative"),
            *(
                models.CheckConstraint(
                    condition=Q(**{f"{score}__isnull": True}) | Q(**{f"{score}__gte": 1, f"{score}__lte": 5}),
                    name=f"member_{score}_1_to_5",
                )
                for score in ("rfm_recency", "rfm_frequency", "rfm_monetary")
            ),
        ]
        indexes = [
            models.Index(fields=["email"], name="member_email_idx"),
            models.Index(fields=["phone"], name="member_phone_idx"),
            models.Index(fields=["joined_at"], name="member_joined_idx"),
            models.Index(fields=["tier_expires_at", "id"], name="member_tier_expires_idx"),
            # Segment filters (campaigns.selectors.segment_members); last_order_at, joined_at and tier have theirs.
            models.Index(fields=["rfm_segment"], name="member_rfm_segment_idx"),
            models.Index(fields=["activity_status"], name="member_activity_idx"),
            models.Index(fields=["birthday_month"], name="member_birthday_month_idx"),
            models.Index(fields=["region"], name="member_region_idx"),
            # The admin's sortable columns (members.console.big_tables): (column, id) so that a sort, ties included,
            # is one index read in either direction.
            models.Index(fields=["order_count", "id"], name="member_order_count_idx"),
            models.Index(fields=["lifetime_spend", "id"], name="member_lifetime_spend_idx"),
            models.Index(fields=["last_order_at", "id"], name="member_last_order_id_idx"),
            models.Index(fields=["points_balance", "id"], name="member_balance_idx"),
            models.Index(fields=["growth_value", "id"], name="member_growth_idx"),
            models.Index(fields=["name", "id"], name="member_name_idx"),
            # The admin's search: email matches case-insensitively (UPPER(email) = UPPER(term)). A part of the name
            # is found by a trigram index on UPPER(name), its beginning by a prefix index on it (PostgreSQL only,
            # migration 0014).
            models.Index(Upper("email"), name="member_email_upper_idx"),
            # The admin's rare flags: small partial indexes, in the list's order.
            models.Index(fields=["joined_at"], condition=Q(is_blocked=True), name="member_blocked_idx"),
            models.Index(fields=["joined_at"], condition=Q(tier_overridden=True), name="member_overridden_idx"),
        ]

    def __str__(self):
        return f"{self.name} ({self.external_id})" if self.name else self.external_id


class Order(models.Model):
    class Status(models.TextChoices):
        PAID = "paid", _("paid")
        PARTIALLY_REFUNDED = "partially_refunded", _("partially refunded")
        REFUNDED = "refunded", _("refunded")
        CANCELLED = "cancelled", _("cancelled")

    order_id = models.CharField(
        _("order id"), max_length=IDENTIFIER_MAX_LENGTH, unique=True, validators=[validate_identifier]
    )
    # No index of its own: order_member_placed_idx (member, -placed_at) serves every lookup by member, and one index
    # fewer is one less to maintain on each of millions of imported orders.
    member = models.ForeignKey(
        Member, verbose_name=_("member"), on_delete=models.PROTECT, related_name="orders", db_index=False
    )
    placed_at = models.DateTimeField(_("placed at"))
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=3)
    quantity = models.PositiveIntegerField(_("quantity"), default=1)
    category = models.CharField(_("category"), max_length=64, blank=True)
    channel = models.CharField(_("channel"), max_length=32, blank=True)
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.PAID)
    refunded_amount = models.DecimalField(_("refunded amount"), max_digits=12, decimal_places=2, default=0)
    # What the order earned when it was recorded: a repeated post answers with the same figures.
    points_earned = models.BigIntegerField(_("points earned"), default=0)
    growth_earned = models.BigIntegerField(_("growth earned"), default=0)
    points_used = models.BigIntegerField(_("points used"), default=0, help_text=_("Points that paid part of the order."))
    # The import that wrote this order (empty for orders the storefront posted). Not indexed: imports find their
    # members through ImportRunMember, and an index would slow every bulk insert.
    import_run = models.ForeignKey(
        "ImportRun", verbose_name=_("import"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        db_index=False, db_constraint=False,
    )
    created_at = models.DateTimeField(_("recorded at"), auto_now_add=True)

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        ordering = ["-placed_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="order_amount_non_negative"),
            models.CheckConstraint(
                condition=Q(refunded_amount__gte=0) & Q(refunded_amount__lte=F("amount")),
                name="order_refund_within_amount",
            ),
            models.CheckConstraint(condition=Q(quantity__gte=1), name="order_quantity_positive"),
        ]
        indexes = [
            models.Index(fields=["member", "-placed_at"], name="order_member_placed_idx"),
            models.Index(fields=["placed_at"], name="order_placed_idx"),
            # The admin's filters and sorts on ten million orders (members.console.big_tables): each filter in the
            # list's order; the column's values for the dropdowns are read by a skip scan of these.
            models.Index(fields=["status", "placed_at"], name="order_status_placed_idx"),
            models.Index(fields=["channel", "placed_at"], name="order_channel_placed_idx"),
            models.Index(fields=["currency", "placed_at"], name="order_currency_placed_idx"),
            models.Index(fields=["amount", "id"], name="order_amount_idx"),
        ]

    def __str__(self):
        return f"{self.order_id} · {self.amount} {self.currency}"


class OrderRefund(models.Model):
    """One refund of (part of) an order, idempotent by the storefront's refund_id. The points and growth columns
    record what the refund handlers took back or gave back, so a repeated post answers with the same figures."""

    refund_id = models.CharField(
        _("refund id"), max_length=IDENTIFIER_MAX_LENGTH, unique=True, validators=[validate_identifier]
    )
    order = models.ForeignKey(Order, verbose_name=_("order"), on_delete=models.PROTECT, related_name="refunds")
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    points_clawed_back = models.BigIntegerField(_("points clawed back"), default=0)
    points_forgiven = models.BigIntegerField(
        _("points forgiven"), default=0, help_text=_("What the balance could not cover, under the within-balance policy.")
    )
    points_debt = models.BigIntegerField(_("points put in debt"), default=0)
    points_returned = models.BigIntegerField(_("points returned"), default=0, help_text=_("Points used on the order, given back."))
    growth_clawed_back = models.BigIntegerField(_("growth clawed back"), default=0)
    created_at = models.DateTimeField(_("refunded at"), default=timezone.now)

    class Meta:
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")
        ordering = ["-created_at", "-id"]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="order_refund_amount_positive")]

    def __str__(self):
        return f"{self.refund_id} · {self.amount}"


class Tag(models.Model):
    """A label staff put on members (VIP, wholesale, influencer...) to find and target them (campaigns segments)."""

    name = models.CharField(_("name"), max_length=50, unique=True)
    color = models.CharField(
        _("colour"), max_length=7, default="#6b7280",
        validators=[RegexValidator(r"^#[0-9a-fA-F]{6}$", _("A colour like #1d4ed8."))],
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("tag")
        verbose_name_plural = _("tags")
        ordering = ["name"]

    def __str__(self):
        return self.name


class ApiScope(models.TextChoices):
    """What a storefront API key may do. A key holds a list of these."""

    READ = "read", _("read members, tiers, rewards")
    MEMBERS = "members", _("register and update members")
    ORDERS = "orders", _("record orders and refunds")
    REDEMPTIONS = "redemptions", _("redeem rewards")
    ENGAGEMENT = "engagement", _("check-ins and member events")
    PRIVACY = "privacy", _("export and anonymise member data")


class ApiKey(AbstractAPIKey):
    """A storefront API key, stored hashed (sha512 of a high-entropy key); the key itself is shown once.

    It lives in the lowest app because every app's API authenticates with it.
    """

    scopes = models.JSONField(_("scopes"), default=list, blank=True)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("created by"), null=True, blank=True, on_delete=models.SET_NULL
    )
    rate_limit_per_minute = models.PositiveIntegerField(
        _("rate limit per minute"),
        null=True,
        blank=True,
        help_text=_("Requests this key may make per minute; empty: the default (LOYALTY_API_RATE_LIMIT_PER_MINUTE)."),
    )

    class Meta(AbstractAPIKey.Meta):
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class ImportRun(models.Model):
    """One import of a file (orders, members, or opening balances), from the admin or the command line: what was
    read, what it did, who ran it. The failed rows are kept as ImportRowError, downloadable as CSV."""

    class Kind(models.TextChoices):
        ORDERS = "orders", _("orders")
        MEMBERS = "members", _("members")
        BALANCES = "balances", _("opening balances and tiers")

    class Status(models.TextChoices):
        RUNNING = "running", _("running")
        BACKFILLING = "backfilling", _("backfilling")
        COMPLETED = "completed", _("completed")
        FAILED = "failed", _("failed")

    class Source(models.TextChoices):
        COMMAND = "command", _("command line")
        ADMIN = "admin", _("admin")

    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices, default=Kind.ORDERS)
    source = models.CharField(_("source"), max_length=20, choices=Source.choices, default=Source.COMMAND)
    file_name = models.CharField(_("file name"), max_length=255)
    sha256 = models.CharField(_("SHA-256"), max_length=64, db_index=True)
    options = models.JSONField(_("options"), default=dict, blank=True)
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.RUNNING)
    rows_read = models.PositiveBigIntegerField(_("rows read"), default=0)
    created = models.PositiveBigIntegerField(_("created"), default=0)
    duplicates = models.PositiveBigIntegerField(_("duplicates"), default=0)
    conflicts = models.PositiveBigIntegerField(_("conflicts"), default=0)
    failed = models.PositiveBigIntegerField(_("failed"), default=0)
    members_created = models.PositiveBigIntegerField(_("members created"), default=0)
    backfilled_members = models.PositiveBigIntegerField(_("members backfilled"), default=0)
    error = models.TextField(_("error"), blank=True)
    started_at = models.DateTimeField(_("started at"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("run by"), null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        verbose_name = _("import run")
        verbose_name_plural = _("import runs")
        ordering = ["-started_at", "-id"]
        permissions = [("import_data", _("Can import orders, members and balances"))]

    def __str__(self):
        return f"{self.get_kind_display()} · {self.file_name} · {timezone.localtime(self.started_at):%Y-%m-%d %H:%M}"


class ImportRowError(models.Model):
    """A row an import did not write: a bad value (reason says which), or an order id seen before with other data."""

    run = models.ForeignKey(ImportRun, verbose_name=_("import"), on_delete=models.CASCADE, related_name="row_errors")
    line = models.PositiveBigIntegerField(_("line"))
    reference = models.CharField(_("reference"), max_length=200, blank=True, help_text=_("The order or customer id."))
    reason = models.TextField(_("reason"))
    is_conflict = models.BooleanField(_("conflict"), default=False)

    class Meta:
        verbose_name = _("import row error")
        verbose_name_plural = _("import row errors")
        ordering = ["run", "line"]
        indexes = [models.Index(fields=["run", "line"], name="import_error_run_line_idx")]

    def __str__(self):
        return _("line %(line)s: %(reason)s") % {"line": self.line, "reason": self.reason}


class ImportRunMember(models.Model):
    """The members an import's rows belong to: the scope of its backfill, and of a re-run that resumes it."""

    run = models.ForeignKey(ImportRun, on_delete=models.CASCADE, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+", db_index=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "member"], name="import_run_member_unique")]

    def __str__(self):
        return f"import run {self.run_id}: member {self.member_id}"


class JobRun(models.Model):
    """One run of a scheduled job for one period (a day, an hour): the record staff read the next morning, and the
    guard that makes a second firing of the same job for the same period (two beats, a retry, a redelivery after a
    worker died) do nothing twice. members.jobs claims, heartbeats, resumes and closes it."""

    class Status(models.TextChoices):
        RUNNING = "running", _("running")
        COMPLETED = "completed", _("completed")
        FAILED = "failed", _("failed")

    job = models.CharField(_("job"), max_length=100, help_text=_("The task's name, e.g. tiers.recalculate_tiers."))
    period = models.CharField(
        _("period"), max_length=40, help_text=_("What the run covers: a local date, an hour, or a manual run's minute.")
    )
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(_("started at"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    # The lease: the holder refreshes it after every batch; a running run whose heartbeat is older than the lease
    # (its worker died) may be taken over by a later firing, which resumes from `cursor`.
    heartbeat_at = models.DateTimeField(_("last heartbeat"), default=timezone.now)
    holder = models.CharField(_("held by"), max_length=64, blank=True, help_text=_("The claim's token."))
    attempts = models.PositiveIntegerField(_("attempts"), default=1)
    cursor = models.BigIntegerField(_("done up to member id"), default=0)
    counts = models.JSONField(_("counts"), default=dict, blank=True)
    params = models.JSONField(_("parameters"), default=dict, blank=True)
    error = models.TextField(_("error"), blank=True)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("run by"), null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+", help_text=_("Empty for a scheduled run."),
    )

    class Meta:
        verbose_name = _("job run")
        verbose_name_plural = _("job runs")
        ordering = ["-started_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["job", "period"], name="job_run_once_per_period")]
        indexes = [models.Index(fields=["job", "-started_at"], name="job_run_job_started_idx")]
        permissions = [("run_jobs", _("Can run scheduled jobs now"))]

    def __str__(self):
        return f"{self.job} · {self.period} · {self.get_status_display()}"


class ApiIdempotencyRecord(models.Model):
    """One `Idempotency-Key` of one API key: the request it was first used with (method, path, SHA-256 of the body)
    and, once that request finished, the response to replay. `response_status` is null while the first request is
    still running (for at most its lease, `claimed_at` + LOYALTY_IDEMPOTENCY_LEASE_SECONDS). Records older than
    LOYALTY_IDEMPOTENCY_TTL_HOURS count as gone, and the daily job members.purge_idempotency_keys deletes them.
    Written by members.idempotency."""

    api_key = models.ForeignKey(ApiKey, verbose_name=_("API key"), on_delete=models.CASCADE, related_name="+")
    key = models.CharField(_("idempotency key"), max_length=255)
    method = models.CharField(_("method"), max_length=10)
    path = models.CharField(_("path"), max_length=2048)
    request_hash = models.CharField(_("request SHA-256"), max_length=64)
    token = models.CharField(_("claim token"), max_length=32, help_text=_("Who inserted the record."))
    response_status = models.PositiveSmallIntegerField(_("response status"), null=True, blank=True)
    response_body = models.JSONField(_("response body"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, db_index=True)
    # The lease of the request running under the key: a claim older than LOYALTY_IDEMPOTENCY_LEASE_SECONDS without a
    # response belongs to a request that died (its worker killed), and the next request with the key takes it over.
    claimed_at = models.DateTimeField(
        _("claimed at"), default=timezone.now, help_text=_("When the request holding the key started (or took it over).")
    )

    class Meta:
        verbose_name = _("API idempotency record")
        verbose_name_plural = _("API idempotency records")
        constraints = [models.UniqueConstraint(fields=["api_key", "key"], name="api_idempotency_key_once_per_api_key")]

    def __str__(self):
        return f"{self.api_key_id} · {self.key}"
