"""bench.admin's data load: the set-based INSERT ... SELECT FROM generate_series of members, orders, the points
ledger, tags, rewards and redemptions, and the member aggregates computed from them.

Split out of bench/admin.py (which keeps the runner, `python -m bench.admin`) so each module stays under 600 lines;
the SQL is the one the benchmark always ran. See bench/admin.py's docstring for what is loaded and why.
"""

import time

from bench.common import log, schema_restore, schema_strip

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
JOINED_SQL = (f"now() - make_interval(years => {YEARS_MEMBERS}) + ((m.member_id - %(m0)s)::float8 / %(members)s) "
              f"* make_interval(years => {YEARS_MEMBERS})")
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

