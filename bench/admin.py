"""Operator console benchmark: the admin changelists of the big tables, their filters, sorts and searches.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loyalty_bench_admin .venv/bin/python -m bench.admin \
        [--members 1000000] [--orders 10000000] [--ledger 10000000] [--redemptions 1000000] [--reps 20] \
        [--reset | --skip-load] [--only REGEX] [--explain]

The issue's target: the changelists of members (1M), orders (10M) and points transactions (10M) render in under
300 ms (p95) on PostgreSQL. What it does (figures as Markdown tables on stdout, progress on stderr):

1. Load, set-based (INSERT ... SELECT FROM generate_series in chunks of about a million rows, with the tables'
   secondary indexes and unique/foreign-key constraints dropped during the load and recreated after it, as
   bench.common.schema_strip/schema_restore do), then VACUUM (ANALYZE):
   - members spread over the migrated tier ladder (70 / 20 / 8 / 2 %), names from 200 x 200 Latin first and last
     names plus about 10 % Chinese names, unique emails, phones, external ids `cust-<i>`, 20 regions, joined over
     five years (a lower id joined earlier), consents, a few % blocked or tier-overridden, RFM segments and scores,
     tags on about 20 %. Purchase aggregates (order count, spend, first and last order, activity status) are computed
     from the loaded orders and points_balance from the unexpired credit lots of the loaded ledger.
   - orders `ord-<i>`: the first 80 % of members buy (skewed: the oldest members have thousands of orders, the
     newest 20 % none), placed after the member joined and within three years, log-normal amounts 5-2,000, CNY with
     some USD and rare HKD, five channels (one rare), ten categories, 94 % paid, 3 % partially refunded, 2 %
     refunded, 1 % cancelled.
   - the points ledger: `--ledger` rows, kinds by fixed shares (70 % earn ... 0.5 % redeem_cancel), credits with
     remaining 0..amount (0 once expired) and an expiry 24 months on, debits negative with nothing remaining,
     idempotency keys `bench-<i>`, order references `ord-<k>` for earn and clawback, adjustments by a staff user.
     The ledger is append-only (a trigger refuses UPDATE/DELETE): it is only inserted into. The invariants of
     `check_ledger` (debits' allocations, balances equal to the sum of amounts) are NOT built: this bench reads.
   - rewards (5) and `--redemptions` redemptions, each on one of the ledger's redeem debits (at most as many as the
     ledger holds: 10 % of it).
2. Measure in process with django.test.Client, logged in as a superuser (`bench-admin`), DEBUG off: per scenario
   2 warm-up requests then `--reps` timed ones (p50, p95, max), the SQL statements of one more, untimed request
   (CaptureQueriesContext: their number and the slowest one's time), the HTTP status and the changelist's row count.
   Scenarios for MemberAdmin, OrderAdmin, PointsTransactionAdmin and RedemptionAdmin: first page, page 50, every
   `list_filter` (built at runtime from the admin's filter specs: common and rare values from pg_stats), every
   sortable column both ways (from `get_sortable_by` and the columns' ordering), searches, one filter + search +
   sort; then (not in the target) the member and order change pages and the admin index.
   `--explain` prints EXPLAIN (ANALYZE, BUFFERS) of the slowest statement of every scenario that missed, on stderr.

It needs a PostgreSQL database of its own (bench.common.bench_database_prepare): it refuses one that already has
members unless --reset (or --skip-load, which measures what is there). Not part of the test suite.
"""
import argparse
import re
import statistics
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from urllib.parse import urlencode

from bench.common import (
    BenchRefused,
    bench_database_prepare,
    django_setup,
    load_average,
    log,
    machine_description,
    schema_restore,
    schema_strip,
    table,
)

TARGET_MS = 300.0
CHUNK = 1_000_000
LOADED_TABLES = ("members_member", "members_member_tags", "members_order", "points_pointstransaction",
                 "points_redemption")
SUPERUSER = "bench-admin"
STAFF_USER = "bench-staff"

# fmt: off
FIRST_NAMES = [
    "Anna", "Annabel", "Hannah", "Joanna", "Susanna", "Marianne", "Emma", "Olivia", "Ava", "Isabella", "Sophia", "Mia",
    "Charlotte", "Amelia", "Harper", "Evelyn", "Abigail", "Emily", "Elizabeth", "Mila", "Ella", "Avery", "Sofia",
    "Camila", "Aria", "Scarlett", "Victoria", "Madison", "Luna", "Grace", "Chloe", "Penelope", "Layla", "Riley",
    "Zoey", "Nora", "Lily", "Eleanor", "Lillian", "Addison", "Aubrey", "Ellie", "Stella", "Natalie", "Zoe", "Leah",
    "Hazel", "Violet", "Aurora", "Savannah", "Audrey", "Brooklyn", "Bella", "Claire", "Skylar", "Lucy", "Paisley",
    "Everly", "Caroline", "Nova", "Genesis", "Emilia", "Kennedy", "Samantha", "Maya", "Willow", "Kinsley", "Naomi",
    "Aaliyah", "Elena", "Sarah", "Ariana", "Allison", "Gabriella", "Alice", "Madelyn", "Cora", "Ruby", "Eva",
    "Serenity", "Autumn", "Adeline", "Hailey", "Gianna", "Valentina", "Isla", "Eliana", "Quinn", "Nevaeh", "Ivy",
    "Sadie", "Piper", "Lydia", "Alexa", "Josephine", "Emery", "Julia", "Delilah", "Arianna", "Vivian", "Kaylee",
    "Liam", "Noah", "William", "James", "Oliver", "Benjamin", "Elijah", "Lucas", "Mason", "Logan", "Alexander",
    "Ethan", "Jacob", "Michael", "Daniel", "Henry", "Jackson", "Sebastian", "Aiden", "Matthew", "Samuel", "David",
    "Joseph", "Carter", "Owen", "Wyatt", "John", "Jack", "Luke", "Jayden", "Dylan", "Grayson", "Levi", "Isaac",
    "Gabriel", "Julian", "Mateo", "Anthony", "Jaxon", "Lincoln", "Joshua", "Christopher", "Andrew", "Theodore",
    "Caleb", "Ryan", "Asher", "Nathan", "Thomas", "Leo", "Isaiah", "Charles", "Josiah", "Hudson", "Christian",
    "Hunter", "Connor", "Eli", "Ezra", "Aaron", "Landon", "Adrian", "Jonathan", "Nolan", "Jeremiah", "Easton",
    "Elias", "Colton", "Cameron", "Carson", "Robert", "Angel", "Maverick", "Nicholas", "Dominic", "Jaxson", "Greyson",
    "Adam", "Ian", "Austin", "Santiago", "Jordan", "Cooper", "Brayden", "Roman", "Evan", "Ezekiel", "Xavier", "Jose",
    "Jace", "Jameson", "Leonardo", "Bryson", "Axel", "Everett", "Parker", "Kayden", "Miles", "Sawyer", "Jason",
]
LAST_NAMES = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee",
    "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young",
    "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker",
    "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Gomez", "Phillips", "Evans", "Turner", "Diaz",
    "Parker", "Cruz", "Edwards", "Collins", "Reyes", "Stewart", "Morris", "Morales", "Murphy", "Cook", "Rogers",
    "Gutierrez", "Ortiz", "Morgan", "Cooper", "Peterson", "Bailey", "Reed", "Kelly", "Howard", "Ramos", "Kim", "Cox",
    "Ward", "Richardson", "Watson", "Brooks", "Chavez", "Wood", "James", "Bennett", "Gray", "Mendoza", "Ruiz",
    "Hughes", "Price", "Alvarez", "Castillo", "Sanders", "Patel", "Myers", "Long", "Ross", "Foster", "Jimenez",
    "Powell", "Jenkins", "Perry", "Russell", "Sullivan", "Bell", "Coleman", "Butler", "Henderson", "Barnes",
    "Gonzales", "Fisher", "Vasquez", "Simmons", "Romero", "Jordan", "Patterson", "Alexander", "Hamilton", "Graham",
    "Reynolds", "Griffin", "Wallace", "Moreno", "West", "Cole", "Hayes", "Bryant", "Herrera", "Gibson", "Ellis",
    "Tran", "Medina", "Aguilar", "Stevens", "Murray", "Ford", "Castro", "Marshall", "Owens", "Harrison", "Fernandez",
    "McDonald", "Woods", "Washington", "Kennedy", "Wells", "Vargas", "Henry", "Chen", "Freeman", "Webb", "Tucker",
    "Guzman", "Burns", "Crawford", "Olson", "Simpson", "Porter", "Hunter", "Gordon", "Mendez", "Silva", "Shaw",
    "Snyder", "Mason", "Dixon", "Munoz", "Hunt", "Hicks", "Holmes", "Palmer", "Wagner", "Black", "Robertson", "Boyd",
    "Rose", "Stone", "Salazar", "Fox", "Warren", "Mills", "Meyer", "Rice", "Schmidt", "Garza", "Daniels", "Ferguson",
    "Nichols", "Stephens", "Soto", "Weaver", "Ryan", "Gardner", "Payne", "Grant", "Dunn", "Kelley", "Spencer",
    "Hawkins", "Arnold", "Pierce", "Hansen", "Peters", "Santos", "Hart", "Bradley", "Knight", "Elliott", "Larsson",
]
# (hanzi, pinyin) pairs: the pinyin makes the email address.
ZH_SURNAMES = [
    ("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"), ("杨", "yang"), ("黄", "huang"),
    ("赵", "zhao"), ("吴", "wu"), ("周", "zhou"), ("徐", "xu"), ("孙", "sun"), ("马", "ma"), ("朱", "zhu"),
    ("胡", "hu"), ("郭", "guo"), ("何", "he"), ("高", "gao"), ("林", "lin"), ("罗", "luo"), ("郑", "zheng"),
    ("梁", "liang"), ("谢", "xie"), ("宋", "song"), ("唐", "tang"), ("许", "xu"), ("韩", "han"), ("冯", "feng"),
    ("邓", "deng"), ("曹", "cao"),
]
ZH_GIVEN = [
    ("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("秀英", "xiuying"), ("敏", "min"), ("静", "jing"), ("丽", "li"),
    ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("洋", "yang"), ("勇", "yong"), ("艳", "yan"), ("杰", "jie"),
    ("娟", "juan"), ("涛", "tao"), ("明", "ming"), ("超", "chao"), ("秀兰", "xiulan"), ("霞", "xia"), ("平", "ping"),
    ("刚", "gang"), ("桂英", "guiying"), ("欣怡", "xinyi"), ("子涵", "zihan"), ("浩然", "haoran"), ("宇轩", "yuxuan"),
    ("梓萱", "zixuan"), ("一诺", "yinuo"), ("雨桐", "yutong"), ("俊杰", "junjie"), ("思远", "siyuan"),
    ("婷", "ting"), ("晨", "chen"), ("鑫", "xin"), ("佳怡", "jiayi"), ("博文", "bowen"), ("嘉欣", "jiaxin"),
    ("志强", "zhiqiang"), ("海燕", "haiyan"),
]
REGIONS = [
    "London", "Manchester", "Birmingham", "Leeds", "Glasgow", "Edinburgh", "Bristol", "Liverpool", "Cardiff",
    "Belfast", "Shanghai", "Beijing", "Guangdong", "Zhejiang", "Jiangsu", "Sichuan", "Hong Kong", "Singapore",
    "Paris", "Berlin",
]
CATEGORIES = ["apparel", "shoes", "beauty", "electronics", "home", "grocery", "toys", "sports", "books", "jewellery"]
TAGS = [  # name, share of members
    ("newsletter-club", 0.08), ("VIP", 0.05), ("wholesale", 0.04), ("influencer", 0.03), ("staff", 0.02),
    ("b2b", 0.015), ("complainer", 0.01), ("press", 0.005), ("partner", 0.003), ("test-account", 0.002),
]
REWARDS = [("bench-coupon-5", "Coupon 5", "coupon", 100), ("bench-voucher-10", "Voucher 10", "cash_voucher", 200),
           ("bench-tote", "Tote bag", "gift", 500), ("bench-spa", "Spa day", "service", 1000),
           ("bench-charity", "Donation", "charity", 2000)]
# Ledger kinds by share of `i mod 1000`: (kind, upper bound, sign). Credits > 0, debits < 0.
LEDGER_KINDS = [
    ("earn", 700, 1), ("bonus", 750, 1), ("redeem", 850, -1), ("redeem_cancel", 855, 1), ("deduct", 875, -1),
    ("deduct_return", 880, 1), ("expire", 940, -1), ("clawback", 960, -1), ("adjust", 970, 0), ("import", 1000, 1),
]
# fmt: on


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.admin", description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000, help="Members to load (default 1,000,000).")
    parser.add_argument("--orders", type=int, default=10_000_000, help="Orders to load (default 10,000,000).")
    parser.add_argument("--ledger", type=int, default=10_000_000, help="Ledger rows to load (default 10,000,000).")
    parser.add_argument(
        "--redemptions", type=int, default=1_000_000, help="Redemptions (default 1,000,000; at most ledger/10)."
    )
    parser.add_argument("--reps", type=int, default=20, help="Timed requests per scenario (default 20).")
    parser.add_argument(
        "--budget", type=float, default=20.0,
        help="Seconds of timed requests per scenario after which it stops early (default 20; the reps column says).",
    )
    parser.add_argument("--only", metavar="REGEX", help="Only the scenarios whose 'admin: scenario' label matches.")
    parser.add_argument("--explain", action="store_true",
                        help="EXPLAIN (ANALYZE, BUFFERS) of the slowest statement of every missed scenario (stderr).")
    parser.add_argument("--reset", action="store_true", help="Drop and recreate the benchmark database first.")
    parser.add_argument("--skip-load", action="store_true", help="Measure the already loaded database.")
    args = parser.parse_args(argv)
    if args.reset and args.skip_load:
        parser.error("--reset and --skip-load exclude each other")
    if min(args.members, args.orders, args.ledger) < 1000:
        parser.error("--members, --orders and --ledger must be at least 1,000")
    return args


# --- Load ----------------------------------------------------------------------------------------------------------

# The member numbered i (0-based) joined JOINED(i): the oldest first, spread evenly over five years.
YEARS_MEMBERS = 5
YEARS_HISTORY = 3


def _chunks(total: int):
    for lo in range(0, total, CHUNK):
        yield lo, min(total, lo + CHUNK) - 1


def users_create():
    from django.contrib.auth import get_user_model

    User = get_user_model()
    admin, created = User.objects.get_or_create(
        username=SUPERUSER, defaults={"is_staff": True, "is_superuser": True, "email": "bench-admin@example.com"}
    )
    if created:
        admin.set_unusable_password()
        admin.save()
    staff, created = User.objects.get_or_create(
        username=STAFF_USER, defaults={"is_staff": True, "email": "bench-staff@example.com"}
    )
    return admin, staff


def members_load(cursor, n: int) -> int:
    """Insert n members; returns the first id (ids are contiguous)."""
    from tiers.models import Tier

    tiers = list(Tier.objects.order_by("rank").values_list("pk", flat=True))
    if len(tiers) < 4:
        raise RuntimeError(f"expected the migrated 4-tier ladder (tiers 0002_default_ladder), found {len(tiers)}")
    first_id = None
    for lo, hi in _chunks(n):
        log(f"members: {lo:,}..{hi:,} of {n:,}")
        cursor.execute(
            """
            INSERT INTO members_member (
                external_id, email, phone, name, birthday, region, joined_at, email_opt_in, sms_opt_in,
                consents_updated_at, referral_code, tier_id, tier_expires_at, tier_overridden, tier_override_reason,
                growth_value, window_spend, window_orders, points_balance, points_pending, points_debt,
                is_blocked, blocked_reason, lifetime_spend, order_count, first_order_at, last_order_at,
                rfm_recency, rfm_frequency, rfm_monetary, rfm_segment, activity_status, rfm_updated_at,
                created_at, updated_at
            )
            SELECT
                'cust-' || i,
                CASE WHEN r.zh THEN zs.py || '.' || zg.py || '.' || i
                     ELSE lower(fn.v) || '.' || lower(ln.v) || '.' || i END || '@example.com',
                '+4479' || lpad(((i::bigint * 7919 + 12345678) %% 100000000)::text, 8, '0'),
                CASE WHEN r.zh THEN zs.v || zg.v ELSE fn.v || ' ' || ln.v END,
                CASE WHEN r.r5 < 0.75 THEN b.birthday END,
                (%(regions)s::text[])[1 + floor(power(r.r6, 1.6) * %(nregions)s)::int],
                j.joined_at,
                r.r7 < 0.5, r.r8 < 0.3, j.joined_at,
                'B' || lpad(i::text, 12, '0'),
                t.tier_id,
                CASE WHEN t.rank > 0 THEN now() + make_interval(days => (r.r9 * 365)::int) END,
                r.r10 < 0.03, CASE WHEN r.r10 < 0.03 THEN 'bench: customer service goodwill' ELSE '' END,
                t.growth, 0, 0, 0, 0, 0,
                r.r11 < 0.02, CASE WHEN r.r11 < 0.02 THEN 'bench: fraud suspicion' ELSE '' END,
                0, 0, NULL, NULL,
                NULL, NULL, NULL, '', 'no_purchase', NULL,
                j.joined_at, j.joined_at
            FROM generate_series(%(lo)s, %(hi)s) AS i
            CROSS JOIN LATERAL (
                SELECT random() + 0 * i AS r1, random() AS r2, random() AS r3, random() AS r4, random() AS r5,
                       random() AS r6, random() AS r7, random() AS r8, random() AS r9, random() AS r10,
                       random() AS r11, random() AS r12, random() < 0.1 AS zh
            ) AS r
            CROSS JOIN LATERAL (SELECT (%(first)s::text[])[1 + floor(r.r1 * %(nfirst)s)::int] AS v) AS fn
            CROSS JOIN LATERAL (SELECT (%(last)s::text[])[1 + floor(r.r2 * %(nlast)s)::int] AS v) AS ln
            CROSS JOIN LATERAL (
                SELECT (%(zs)s::text[])[1 + floor(r.r3 * %(nzs)s)::int] AS v,
                       (%(zs_py)s::text[])[1 + floor(r.r3 * %(nzs)s)::int] AS py) AS zs
            CROSS JOIN LATERAL (
                SELECT (%(zg)s::text[])[1 + floor(r.r4 * %(nzg)s)::int] AS v,
                       (%(zg_py)s::text[])[1 + floor(r.r4 * %(nzg)s)::int] AS py) AS zg
            CROSS JOIN LATERAL (
                SELECT now() - make_interval(years => %(years)s)
                       + (i::float8 / %(n)s) * make_interval(years => %(years)s)
                       + make_interval(secs => r.r12 * 3600) AS joined_at) AS j
            CROSS JOIN LATERAL (
                SELECT date '1950-01-01' + floor(r.r9 * 365 * 55)::int AS birthday) AS b
            CROSS JOIN LATERAL (
                SELECT CASE WHEN r.r6 < 0.70 THEN 0 WHEN r.r6 < 0.90 THEN 1 WHEN r.r6 < 0.98 THEN 2 ELSE 3 END
                       AS rank) AS tr
            CROSS JOIN LATERAL (
                SELECT tr.rank, (%(tiers)s::bigint[])[1 + tr.rank] AS tier_id,
                       (CASE tr.rank WHEN 0 THEN r.r8 * 999 WHEN 1 THEN 1000 + r.r8 * 3999
                                     WHEN 2 THEN 5000 + r.r8 * 14999 ELSE 20000 + r.r8 * 40000 END)::bigint
                       AS growth) AS t
            ORDER BY i
            """,
            {
                "lo": lo, "hi": hi, "n": n, "years": YEARS_MEMBERS, "tiers": tiers,
                "regions": REGIONS, "nregions": len(REGIONS),
                "first": FIRST_NAMES, "nfirst": len(FIRST_NAMES), "last": LAST_NAMES, "nlast": len(LAST_NAMES),
                "zs": [z for z, _ in ZH_SURNAMES], "zs_py": [p for _, p in ZH_SURNAMES], "nzs": len(ZH_SURNAMES),
                "zg": [z for z, _ in ZH_GIVEN], "zg_py": [p for _, p in ZH_GIVEN], "nzg": len(ZH_GIVEN),
            },
        )
    cursor.execute("SELECT min(id), max(id), count(*) FROM members_member")
    first_id, last_id, count = cursor.fetchone()
    if count != n or last_id - first_id + 1 != n:
        raise RuntimeError(f"members {first_id}..{last_id} are not contiguous ({count} rows)")
    return first_id


# A member who buys or earns: the first 80 % of ids (the oldest members), skewed towards the oldest.
MEMBER_PICK = "(%(m0)s + floor(0.8 * %(members)s * power(random() + 0 * i, 2)))::bigint"
# That member's join moment (the members' formula without the random hour) and the start of the history.
JOINED_SQL = ("now() - make_interval(years => {y}) + ((m.member_id - %(m0)s)::float8 / %(members)s) "
              "* make_interval(years => {y})").format(y=YEARS_MEMBERS)
HISTORY_START = f"greatest(now() - make_interval(years => {YEARS_HISTORY}), {JOINED_SQL})"


def orders_load(cursor, *, n: int, m0: int, members: int) -> None:
    for lo, hi in _chunks(n):
        log(f"orders: {lo:,}..{hi:,} of {n:,}")
        cursor.execute(
            f"""
            INSERT INTO members_order (
                order_id, member_id, placed_at, amount, currency, quantity, category, channel, status,
                refunded_amount, points_earned, growth_earned, points_used, import_run_id, created_at
            )
            SELECT 'ord-' || i, m.member_id, p.placed_at, a.amount,
                   CASE WHEN r.r2 < 0.94 THEN 'CNY' WHEN r.r2 < 0.99 THEN 'USD' ELSE 'HKD' END,
                   1 + floor(power(r.r3, 3) * 5)::int,
                   (%(categories)s::text[])[1 + floor(power(r.r4, 1.5) * 10)::int],
                   CASE WHEN r.r5 < 0.45 THEN 'web' WHEN r.r5 < 0.80 THEN 'app' WHEN r.r5 < 0.92 THEN 'store'
                        WHEN r.r5 < 0.995 THEN 'mini_program' ELSE 'phone' END,
                   s.status,
                   CASE s.status WHEN 'partially_refunded' THEN round(a.amount * (0.05 + 0.9 * r.r7)::numeric, 2)
                                 WHEN 'refunded' THEN a.amount ELSE 0 END,
                   CASE WHEN s.status = 'cancelled' THEN 0 ELSE floor(a.amount)::bigint END,
                   CASE WHEN s.status = 'cancelled' THEN 0 ELSE floor(a.amount)::bigint END,
                   CASE WHEN r.r8 < 0.1 THEN floor(r.r7 * 500)::bigint ELSE 0 END,
                   NULL, p.placed_at + interval '2 seconds'
            FROM generate_series(%(lo)s, %(hi)s) AS i
            CROSS JOIN LATERAL (SELECT {MEMBER_PICK} AS member_id) AS m
            CROSS JOIN LATERAL (
                SELECT random() + 0 * i AS r1, random() AS r2, random() AS r3, random() AS r4, random() AS r5,
                       random() AS r6, random() AS r7, random() AS r8, 1 - random() AS u1, random() AS u2) AS r
            CROSS JOIN LATERAL (
                SELECT {HISTORY_START} + r.r1 * (now() - {HISTORY_START}) AS placed_at) AS p
            CROSS JOIN LATERAL (
                SELECT round(least(2000, greatest(5, exp(3.9 + 0.9 * sqrt(-2 * ln(r.u1)) * cos(2 * pi() * r.u2))))
                             ::numeric, 2) AS amount) AS a
            CROSS JOIN LATERAL (
                SELECT CASE WHEN r.r6 < 0.94 THEN 'paid' WHEN r.r6 < 0.97 THEN 'partially_refunded'
                            WHEN r.r6 < 0.99 THEN 'refunded' ELSE 'cancelled' END AS status) AS s
            ORDER BY i
            """,
            {"lo": lo, "hi": hi, "m0": m0, "members": members, "categories": CATEGORIES},
        )


def ledger_load(cursor, *, n: int, m0: int, members: int, orders: int, staff_id: int) -> None:
    kind_case = "CASE " + " ".join(f"WHEN mod(i, 1000) < {bound} THEN '{kind}'" for kind, bound, _ in LEDGER_KINDS)
    kind_case += " END"
    credit_kinds = ", ".join(f"'{k}'" for k, _, sign in LEDGER_KINDS if sign > 0)
    costs = [cost for *_, cost in REWARDS]
    for lo, hi in _chunks(n):
        log(f"ledger: {lo:,}..{hi:,} of {n:,}")
        cursor.execute(
            f"""
            INSERT INTO points_pointstransaction (
                member_id, kind, amount, remaining, expires_at, pending_until, debt_delta, reverses_id, reference,
                idempotency_key, created_at, created_by_id, note
            )
            SELECT m.member_id, k.kind, a.amount,
                   CASE WHEN a.amount > 0 AND c.created_at + interval '24 months' > now()
                        THEN floor(a.amount * r.r3)::bigint ELSE 0 END,
                   CASE WHEN a.amount > 0 THEN c.created_at + interval '24 months' END,
                   NULL, 0, NULL,
                   CASE WHEN k.kind IN ('earn', 'clawback') THEN 'ord-' || (1 + floor(r.r4 * %(orders)s)::bigint)
                        WHEN k.kind = 'redeem' THEN 'redemption'
                        ELSE '' END,
                   'bench-' || i, c.created_at,
                   CASE WHEN k.kind = 'adjust' THEN %(staff)s END,
                   CASE WHEN k.kind = 'adjust' THEN 'bench: goodwill adjustment' ELSE '' END
            FROM generate_series(%(lo)s, %(hi)s) AS i
            CROSS JOIN LATERAL (SELECT {MEMBER_PICK} AS member_id) AS m
            CROSS JOIN LATERAL (SELECT random() + 0 * i AS r1, random() AS r2, random() AS r3, random() AS r4) AS r
            CROSS JOIN LATERAL (SELECT {kind_case} AS kind) AS k
            CROSS JOIN LATERAL (SELECT {HISTORY_START} + r.r1 * (now() - {HISTORY_START}) AS created_at) AS c
            CROSS JOIN LATERAL (
                SELECT CASE
                    WHEN k.kind = 'redeem' THEN -(%(costs)s::bigint[])[1 + mod(i, {len(costs)})::int]
                    WHEN k.kind = 'adjust' THEN (CASE WHEN r.r2 < 0.7 THEN 1 ELSE -1 END) * (10 + floor(r.r2 * 490))
                    WHEN k.kind IN ({credit_kinds}) THEN 1 + floor(exp(r.r2 * ln(2000)))
                    ELSE -(1 + floor(exp(r.r2 * ln(1000))))
                END::bigint AS amount) AS a
            ORDER BY i
            """,
            {"lo": lo, "hi": hi, "m0": m0, "members": members, "orders": orders, "staff": staff_id,
             "costs": costs},
        )


def tags_load(cursor, *, m0: int, members: int) -> None:
    from members.models import Tag

    colours = ["#1d4ed8", "#b91c1c", "#047857", "#7c3aed", "#b45309"]
    for n, (name, share) in enumerate(TAGS):
        tag, _ = Tag.objects.get_or_create(name=name, defaults={"color": colours[n % len(colours)]})
        cursor.execute(
            "INSERT INTO members_member_tags (member_id, tag_id) "
            "SELECT i, %(tag)s FROM generate_series(%(m0)s, %(m1)s) AS i WHERE random() + 0 * i < %(share)s",
            {"tag": tag.pk, "m0": m0, "m1": m0 + members - 1, "share": share},
        )


def rewards_create() -> None:
    from points.models import Reward

    for code, name, kind, cost in REWARDS:
        Reward.objects.get_or_create(code=code, defaults={"name": name, "kind": kind, "points_cost": cost})


def redemptions_load(cursor, n: int) -> int:
    """One redemption per redeem debit (the first n of them): the reward whose cost the debit paid."""
    cursor.execute(
        """
        INSERT INTO points_redemption (
            member_id, reward_id, quantity, points, status, voucher_code, idempotency_key, debit_id, created_at,
            cancelled_at, cancelled_by_id, cancel_reason
        )
        SELECT t.member_id, w.id, 1, -t.amount, s.status, 'V' || lpad(t.id::text, 12, '0'), 'bench-red-' || t.id,
               t.id, t.created_at,
               CASE WHEN s.status = 'cancelled' THEN t.created_at + interval '1 day' END, NULL,
               CASE WHEN s.status = 'cancelled' THEN 'bench: customer changed their mind' ELSE '' END
        FROM (SELECT * FROM points_pointstransaction WHERE kind = 'redeem' ORDER BY id LIMIT %(n)s) AS t
        JOIN points_reward w ON w.points_cost = -t.amount AND w.code LIKE 'bench-%%'
        CROSS JOIN LATERAL (
            SELECT CASE WHEN random() + 0 * t.id < 0.97 THEN 'completed' ELSE 'cancelled' END AS status) AS s
        ORDER BY t.id
        """,
        {"n": n},
    )
    return cursor.rowcount


def member_aggregates(cursor) -> None:
    """Purchase aggregates, activity and RFM from the loaded orders; points_balance from the live credit lots."""
    cursor.execute(
        """
        UPDATE members_member AS m SET
            order_count = o.n, lifetime_spend = o.spend, first_order_at = o.first_at, last_order_at = o.last_at,
            window_orders = o.window_n, window_spend = o.window_spend,
            activity_status = CASE WHEN o.last_at > now() - interval '30 days' THEN 'active'
                                   WHEN o.last_at > now() - interval '90 days' THEN 'dormant' ELSE 'churn_risk' END,
            rfm_recency = 1 + floor(random() * 5)::int, rfm_frequency = 1 + floor(random() * 5)::int,
            rfm_monetary = 1 + floor(random() * 5)::int,
            rfm_segment = (ARRAY['champions', 'loyal', 'potential_loyalists', 'new_customers', 'promising',
                                 'need_attention', 'about_to_sleep', 'at_risk', 'cant_lose', 'hibernating',
                                 'lost'])[1 + floor(power(random(), 1.3) * 11)::int],
            rfm_updated_at = now()
        FROM (
            SELECT member_id, count(*) AS n, sum(amount - refunded_amount) AS spend, min(placed_at) AS first_at,
                   max(placed_at) AS last_at,
                   count(*) FILTER (WHERE placed_at > now() - interval '12 months') AS window_n,
                   coalesce(sum(amount - refunded_amount) FILTER (WHERE placed_at > now() - interval '12 months'), 0)
                       AS window_spend
            FROM members_order WHERE status <> 'cancelled' GROUP BY member_id
        ) AS o
        WHERE m.id = o.member_id
        """
    )
    cursor.execute(
        """
        UPDATE members_member AS m SET points_balance = l.total
        FROM (
            SELECT member_id, sum(remaining) AS total FROM points_pointstransaction
            WHERE remaining > 0 AND expires_at > now() GROUP BY member_id
        ) AS l
        WHERE m.id = l.member_id
        """
    )


def load(args) -> list[list[str]]:
    from django.db import connection, transaction

    timings = []

    def timed(label, fn):
        started = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - started
        timings.append([label, f"{seconds:.1f}"])
        log(f"load: {label} in {seconds:.1f} s")
        return result

    _admin, staff = users_create()
    rewards_create()
    with transaction.atomic(), connection.cursor() as cursor:
        saved = timed("drop indexes and constraints", lambda: schema_strip(cursor, LOADED_TABLES))
        m0 = timed(f"members_member ({args.members:,})", lambda: members_load(cursor, args.members))
        timed("members_member_tags", lambda: tags_load(cursor, m0=m0, members=args.members))
        timed(f"members_order ({args.orders:,})",
              lambda: orders_load(cursor, n=args.orders, m0=m0, members=args.members))
        timed(f"points_pointstransaction ({args.ledger:,})",
              lambda: ledger_load(cursor, n=args.ledger, m0=m0, members=args.members, orders=args.orders,
                                  staff_id=staff.pk))
        made = timed(f"points_redemption ({args.redemptions:,} asked)",
                     lambda: redemptions_load(cursor, args.redemptions))
        if made < args.redemptions:
            log(f"redemptions: {made:,} made (the ledger holds only that many redeem debits)")
        timed("member aggregates (UPDATE from orders and lots)", lambda: member_aggregates(cursor))
        timed("recreate indexes and constraints", lambda: schema_restore(cursor, saved))
    with connection.cursor() as cursor:
        def vacuum():
            for name in (*LOADED_TABLES, "tiers_tier", "points_reward", "members_tag", "auth_user"):
                cursor.execute(f"VACUUM (ANALYZE) {name}")

        timed("VACUUM (ANALYZE)", vacuum)
    return timings


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
        except Exception as exc:  # noqa: BLE001 - reported, the bench goes on
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
            scenarios += filter_scenarios(label, model_admin, changelist, base, t)
        except Exception as exc:  # noqa: BLE001
            log(f"{label}: filters: {exc!r}")
        try:
            scenarios += sort_scenarios(label, changelist, base)
        except Exception as exc:  # noqa: BLE001
            log(f"{label}: sorts: {exc!r}")

        def search(name, term, needs=None):
            if needs and not _supports(model_admin, needs):
                log(f"{label}: search {name}: the admin does not search {needs}; skipped")
                return
            scenarios.append(Scenario(label, f"search {name} '{term}'", f"{base}?{urlencode({'q': term})}"))

        def combined(params, column, desc=True, changelist=changelist):
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
    except Exception as exc:  # noqa: BLE001 - reported, the bench goes on
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
    except Exception as exc:  # noqa: BLE001
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


def _ms(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.0f}"


def report(args, machine, timings, results, started) -> str:
    headers = ["admin", "scenario", "status", "rows", "reps", "p50 ms", "p95 ms", "max ms", "queries",
               "slowest SQL ms", "p95 < 300 ms"]

    def row(r: Result, target: bool):
        return [r.scenario.admin, r.scenario.name.replace("|", "/"), r.status, r.rows, len(r.latencies),
                _ms(r.pct(50)), _ms(r.pct(95)), _ms(max(r.latencies) * 1000 if r.latencies else None),
                "-" if r.queries is None else r.queries, _ms(r.slowest_sql_ms),
                r.verdict if target else ("error" if r.verdict == "error" else "-")]

    in_target = [r for r in results if r.scenario.target]
    info = [r for r in results if not r.scenario.target]
    counts = _counts()
    parts = [
        f"bench.admin · members={counts['members']:,} orders={counts['orders']:,} ledger={counts['ledger']:,} "
        f"redemptions={counts['redemptions']:,} reps={args.reps}",
        "",
        table(["machine", ""], [[k, v] for k, v in machine.items()]),
        "",
    ]
    if timings:
        parts += [table(["load step", "seconds"], timings), ""]
    met = sum(1 for r in in_target if r.verdict == "met")
    missed = [r for r in in_target if r.verdict != "met"]
    if in_target:
        parts += [
            table(headers, [row(r, True) for r in in_target],
                  title=f"Changelists (target: p95 under {TARGET_MS:.0f} ms): {met} of {len(in_target)} met"),
            "",
        ]
    if info:
        parts += [
            table(headers[:-1], [row(r, False)[:-1] for r in info],
                  title="Change pages and the index (not in the 300 ms target, for information)"),
            "",
        ]
    errors = [r for r in results if r.error]
    if errors:
        parts += ["Errors:", *[f"- {r.scenario.admin}: {r.scenario.name}: {r.error}" for r in errors], ""]
    if missed:
        hint = " (EXPLAIN on stderr)" if args.explain else " (--explain shows their slowest statement's plan)"
        parts += [f"Missed or failed: {len(missed)} scenario(s){hint}", ""]
    parts.append(f"Total benchmark time {(time.perf_counter() - started) / 60:.1f} min; load average at end "
                 f"{load_average()}.")
    return "\n".join(parts)


def _counts() -> dict[str, int]:
    """Row counts from the planner's statistics (an exact count of 10M rows would take seconds)."""
    from django.db import connection

    names = {"members": "members_member", "orders": "members_order", "ledger": "points_pointstransaction",
             "redemptions": "points_redemption"}
    out = {}
    with connection.cursor() as c:
        for key, name in names.items():
            c.execute("SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass(%s)", [name])
            out[key] = c.fetchone()[0]
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    django_setup()
    started = time.perf_counter()
    timings = []
    if args.skip_load:
        from django.db import connection

        if connection.settings_dict["ENGINE"] != "django.db.backends.postgresql":
            print("bench.admin: needs PostgreSQL (DATABASE_URL)", file=sys.stderr)
            return 2
        from django.db import OperationalError

        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_class WHERE relname = 'members_member' "
                               "AND reltuples > 0)")
                loaded = cursor.fetchone()[0]
        except OperationalError as exc:
            print(f"bench.admin: {exc}", file=sys.stderr)
            return 2
        if not loaded:
            print("bench.admin: --skip-load needs a loaded (and analysed) database; load it first", file=sys.stderr)
            return 2
        log(f"measuring the loaded database {connection.settings_dict['NAME']!r}")
    else:
        try:
            name = bench_database_prepare(reset=args.reset)
        except BenchRefused as refused:
            print(f"bench.admin: {refused.message}", file=sys.stderr)
            return 2
        log(f"database {name!r} ready; loading")
        timings = load(args)
    machine = machine_description()
    results = measure(args)
    print(report(args, machine, timings, results, started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
