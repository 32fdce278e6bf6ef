"""`manage.py seed_demo`: realistic demo data, recorded through the real services.

Members are registered with `member_register` and orders recorded with `order_record`, so points, growth value and
tier upgrades follow exactly as they would from the storefront API (and any handler added to
LOYALTY_ORDER_HANDLERS / LOYALTY_MEMBER_HANDLERS runs for the demo data too).

What it builds (defaults: 2,000 members, 20,000 orders):
- members joining over the last two years, more of them recently; Chinese names (王芳, 李娜, 张伟...) and English
  names; regions in mainland China, Hong Kong/Taiwan and abroad; emails at example.com / example.cn; unique
  Chinese mobile numbers; birthdays; marketing consents for part of them; some referred by an earlier member;
- orders over the last 730 days in the site time zone, strictly in the past and after the member joined, placed
  mostly at lunch time and in the evening, with bumps on the 6·18 and 11·11 shopping festivals; a skewed mix of
  buyers (a few heavy buyers, many one- or two-order members, some dormant members without orders); amounts
  log-normal by category (median basket: food ¥39, apparel ¥129, electronics ¥429...; heavy buyers top up with
  smaller baskets). With the defaults the median order is about ¥70 (5%-95%: ¥13-¥410) and the default ladder
  ends up with about 7 Diamonds, 100 Golds, 450 Silvers and 1,450 Members. Amounts are kept this modest on purpose:
  20,000 orders for 2,000 members is 10 orders a member, so bigger baskets would put most members above Silver.

Deterministic: profiles, order counts and amounts come from `random.Random(--seed)`, timestamps from a second
generator seeded alike and laid out back from an anchor ("now" on the first run), so only the dates move with the day
it runs (and with them which order crosses a threshold, hence the points at the higher multiplier). Referral codes
are drawn by `member_register` itself. Ids are stable (demo-00001, demo-o-000001): members are numbered in joining order
and orders in chronological order, and orders are recorded in that order so tier upgrades happen in sequence.

Re-running is cheap and safe: when the demo data is complete it says so and stops; when a previous run was
interrupted it recovers the first run's anchor from the first member's join time and records what is missing.
Work is batched in `transaction.atomic()` blocks (each service's own transaction becomes a savepoint), so SQLite
does not commit once per order and an interruption loses at most one batch.

Cost: every order goes through `order_record` (about 15 SQL statements with the handlers of today), which is ORM
time, not database time: about 5 ms an order on the 2-core demo machine, so the defaults take about two minutes on
SQLite; a re-run on complete data takes about a second.

Ledger rows, tier changes and `created_at` stamps carry the time of seeding, not the order's time: the services
stamp them with the current time, and the demo does not fake the clock.
"""
import random
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Count, Sum
from django.test.utils import override_settings
from django.utils import timezone

from members.errors import OrderConflict
from members.models import Member, Order
from members.rfm import rfm_refresh
from members.services import member_register, order_record

MEMBER_PREFIX = "demo-"
ORDER_PREFIX = "demo-o-"
HISTORY_DAYS = 730
BATCH_SIZE = 500
PROGRESS_EVERY = 5000

# --- Names ---------------------------------------------------------------------------------------------------------
# Common surnames with a rough share of the population (王, 李, 张, 刘, 陈 cover about a third of China) and pinyin.
CHINESE_SURNAMES = [
    ("王", "wang", 7.1), ("李", "li", 7.0), ("张", "zhang", 6.7), ("刘", "liu", 5.4), ("陈", "chen", 4.5),
    ("杨", "yang", 3.1), ("黄", "huang", 2.2), ("赵", "zhao", 2.0), ("吴", "wu", 1.9), ("周", "zhou", 1.9),
    ("徐", "xu", 1.3), ("孙", "sun", 1.3), ("马", "ma", 1.2), ("朱", "zhu", 1.2), ("胡", "hu", 1.1),
    ("郭", "guo", 1.1), ("何", "he", 1.0), ("高", "gao", 1.0), ("林", "lin", 1.0), ("罗", "luo", 0.9),
    ("郑", "zheng", 0.9), ("梁", "liang", 0.8), ("谢", "xie", 0.7), ("宋", "song", 0.7), ("唐", "tang", 0.7),
    ("许", "xu", 0.6), ("韩", "han", 0.6), ("冯", "feng", 0.6), ("邓", "deng", 0.6), ("曹", "cao", 0.6),
    ("彭", "peng", 0.5), ("曾", "zeng", 0.5), ("肖", "xiao", 0.5), ("田", "tian", 0.5), ("董", "dong", 0.5),
    ("袁", "yuan", 0.4), ("潘", "pan", 0.4), ("于", "yu", 0.4), ("蒋", "jiang", 0.4), ("蔡", "cai", 0.4),
    ("余", "yu", 0.4), ("杜", "du", 0.4), ("叶", "ye", 0.4), ("程", "cheng", 0.4), ("苏", "su", 0.3),
    ("魏", "wei", 0.3), ("吕", "lv", 0.3), ("丁", "ding", 0.3), ("任", "ren", 0.3), ("沈", "shen", 0.3),
    ("姚", "yao", 0.3), ("卢", "lu", 0.3), ("姜", "jiang", 0.3), ("崔", "cui", 0.3), ("钟", "zhong", 0.3),
    ("谭", "tan", 0.3), ("陆", "lu", 0.3), ("汪", "wang", 0.3), ("范", "fan", 0.3), ("金", "jin", 0.3),
    ("石", "shi", 0.3), ("廖", "liao", 0.3), ("贾", "jia", 0.2), ("夏", "xia", 0.2), ("韦", "wei", 0.2),
    ("方", "fang", 0.2), ("白", "bai", 0.2), ("邹", "zou", 0.2), ("孟", "meng", 0.2), ("熊", "xiong", 0.2),
    ("秦", "qin", 0.2), ("邱", "qiu", 0.2), ("江", "jiang", 0.2), ("尹", "yin", 0.2), ("薛", "xue", 0.2),
    ("欧阳", "ouyang", 0.05), ("司马", "sima", 0.02), ("上官", "shangguan", 0.02),
]
CHINESE_GIVEN_NAMES = [
    # Given names common across generations: one and two characters.
    ("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"), ("丽", "li"), ("强", "qiang"),
    ("磊", "lei"), ("军", "jun"), ("洋", "yang"), ("勇", "yong"), ("艳", "yan"), ("杰", "jie"), ("娟", "juan"),
    ("涛", "tao"), ("明", "ming"), ("超", "chao"), ("秀英", "xiuying"), ("霞", "xia"), ("平", "ping"),
    ("刚", "gang"), ("桂英", "guiying"), ("华", "hua"), ("丹", "dan"), ("玲", "ling"), ("婷", "ting"),
    ("雪", "xue"), ("琳", "lin"), ("晨", "chen"), ("鹏", "peng"), ("斌", "bin"), ("浩", "hao"), ("颖", "ying"),
    ("建华", "jianhua"), ("建国", "jianguo"), ("志强", "zhiqiang"), ("海燕", "haiyan"), ("晓东", "xiaodong"),
    ("丽娟", "lijuan"), ("春梅", "chunmei"), ("文博", "wenbo"), ("思远", "siyuan"), ("佳怡", "jiayi"),
    ("欣怡", "xinyi"), ("子轩", "zixuan"), ("梓涵", "zihan"), ("浩然", "haoran"), ("雨桐", "yutong"),
    ("一诺", "yinuo"), ("宇航", "yuhang"), ("诗涵", "shihan"), ("俊杰", "junjie"), ("嘉怡", "jiayi"),
    ("子豪", "zihao"), ("梦瑶", "mengyao"), ("晓雯", "xiaowen"), ("天宇", "tianyu"), ("若曦", "ruoxi"),
    ("家豪", "jiahao"), ("雅琪", "yaqi"), ("明轩", "mingxuan"), ("紫萱", "zixuan"), ("博文", "bowen"),
]
ENGLISH_FIRST_NAMES = [
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
    "William", "Sarah", "Richard", "Emily", "Thomas", "Jessica", "Daniel", "Emma", "Matthew", "Olivia",
    "Andrew", "Sophie", "Kevin", "Grace", "Jason", "Chloe", "Ryan", "Hannah", "Eric", "Amy", "Tony", "Lucy",
    "Jack", "Alice", "Peter", "Helen", "Leo", "Vivian", "Oliver", "Charlotte", "Ethan", "Mia", "Lucas", "Ella",
]
ENGLISH_LAST_NAMES = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Taylor", "Anderson",
    "Thomas", "Moore", "Martin", "Jackson", "Thompson", "White", "Harris", "Clark", "Lewis", "Walker", "Hall",
    "Young", "King", "Wright", "Scott", "Green", "Baker", "Adams", "Nelson", "Carter", "Mitchell", "Roberts",
    "Turner", "Phillips", "Campbell", "Parker", "Evans", "Edwards", "Collins", "Stewart", "Morris", "Murphy",
    "Cook", "Rogers", "Wong", "Chan", "Lee", "Tan", "Lim", "Ng",
]

# --- Regions -------------------------------------------------------------------------------------------------------
# (region as stored on the member, weight): the big coastal provinces and tier-1 cities carry most e-commerce.
CHINA_REGIONS = [
    ("上海", 9), ("北京", 8), ("广东·广州", 7), ("广东·深圳", 8), ("广东·东莞", 2), ("浙江·杭州", 7),
    ("浙江·宁波", 3), ("江苏·南京", 5), ("江苏·苏州", 5), ("四川·成都", 5), ("湖北·武汉", 4), ("重庆", 4),
    ("天津", 3), ("陕西·西安", 3), ("湖南·长沙", 3), ("福建·厦门", 2), ("福建·福州", 2), ("山东·青岛", 3),
    ("山东·济南", 2), ("河南·郑州", 3), ("辽宁·沈阳", 2), ("辽宁·大连", 2), ("安徽·合肥", 2), ("云南·昆明", 2),
    ("黑龙江·哈尔滨", 1), ("广西·南宁", 1), ("海南·海口", 1), ("贵州·贵阳", 1), ("江西·南昌", 1),
    ("河北·石家庄", 1), ("山西·太原", 1), ("吉林·长春", 1), ("内蒙古·呼和浩特", 1), ("新疆·乌鲁木齐", 1),
    ("香港", 2), ("台湾·台北", 1), ("澳门", 1),
]
INTERNATIONAL_REGIONS = [
    ("Singapore", 5), ("Malaysia · Kuala Lumpur", 3), ("USA · Los Angeles", 3), ("USA · New York", 3),
    ("USA · San Francisco", 2), ("Canada · Vancouver", 3), ("Canada · Toronto", 2), ("UK · London", 3),
    ("Australia · Sydney", 3), ("Australia · Melbourne", 2), ("Japan · Tokyo", 2), ("Germany · Berlin", 1),
    ("France · Paris", 1), ("New Zealand · Auckland", 1),
]

# --- Orders --------------------------------------------------------------------------------------------------------
# category: (share of orders, median basket in currency units, log-normal sigma of the basket)
CATEGORIES = {
    "apparel": (22, 129, 0.6),
    "beauty": (16, 119, 0.6),
    "food": (16, 39, 0.55),
    "home": (12, 149, 0.7),
    "electronics": (9, 429, 0.8),
    "baby": (7, 99, 0.6),
    "sports": (7, 169, 0.65),
    "books": (6, 39, 0.5),
    "pets": (5, 69, 0.6),
}
CHANNELS = [("app", 40), ("mini-program", 27), ("web", 18), ("store", 15)]
# Relative weight of each local hour of the day (0..23): lunch break and the evening after work are the peaks.
ORDER_HOUR_WEIGHTS = [3, 2, 1, 1, 1, 1, 2, 4, 6, 7, 8, 9, 12, 11, 8, 8, 8, 9, 10, 13, 16, 18, 15, 8]
STORE_HOURS = range(10, 22)
FESTIVAL_DAYS = [(6, 18), (11, 11)]  # 618 and Double 11 (双十一): the big shopping festivals
FESTIVAL_SHARE = 0.06  # of the orders that fall on a festival day in the member's window
MIN_AMOUNT, MAX_AMOUNT = Decimal("9.90"), Decimal("30000.00")

# Member behaviour. Order frequency is a heavy-tailed weight (log-normal) times tenure: a few heavy buyers, many
# members with one or two orders, and dormant members who never ordered.
DORMANT_SHARE = 0.12
FREQUENCY_SIGMA = 2.0
FREQUENCY_CAP = 45.0  # times the median member: the heaviest buyers order every few days, not hourly
BASKET_ELASTICITY = 0.2
CHINESE_NAME_SHARE = 0.75
REFERRED_SHARE = 0.15


@dataclass(frozen=True, slots=True)
class MemberPlan:
    external_id: str
    name: str
    email: str
    phone: str
    birthday: date | None
    region: str
    email_opt_in: bool
    sms_opt_in: bool
    joined_at: datetime
    referrer_index: int | None  # index of an earlier member in the plan


@dataclass(frozen=True, slots=True)
class OrderPlan:
    order_id: str
    member_index: int
    placed_at: datetime
    amount: Decimal
    quantity: int
    category: str
    channel: str


@dataclass(frozen=True, slots=True)
class DemoPlan:
    members: list[MemberPlan]
    orders: list[OrderPlan]


def member_external_id(index: int) -> str:
    return f"{MEMBER_PREFIX}{index + 1:05d}"


def order_external_id(index: int) -> str:
    return f"{ORDER_PREFIX}{index + 1:06d}"


def join_offsets(rng: random.Random, members: int) -> list[int]:
    """Seconds before the anchor at which each member joined, oldest first. Drawn first from the generator so the
    first member's offset is known without the anchor (it is how an interrupted run finds its anchor again).

    More members join recently (the programme grows); everyone joined at least a day ago."""
    day = 86400
    offsets = [day + int((HISTORY_DAYS - 1) * day * rng.random() ** 1.4) for _ in range(members)]
    return sorted(offsets, reverse=True)


def first_join_offset(seed: int, members: int) -> int:
    offsets = join_offsets(random.Random(seed), members)
    return offsets[0] if offsets else 0


def build_plan(*, seed: int, members: int, orders: int, anchor: datetime) -> DemoPlan:
    """The whole demo data set, deterministic for (seed, members, orders, anchor). `anchor` is in the past."""
    rng = random.Random(seed)
    # Timestamps come from their own generator: names, amounts and order counts stay the same whatever the anchor.
    time_rng = random.Random(f"{seed}:time")
    site_tz = ZoneInfo(settings.TIME_ZONE)
    offsets = join_offsets(rng, members)

    member_plans: list[MemberPlan] = []
    frequency: list[float] = []
    favourite_categories: list[list[str]] = []
    favourite_channel: list[str] = []
    used_phones: set[str] = set()
    used_emails: set[str] = set()
    for index, offset in enumerate(offsets):
        joined_at = anchor - timedelta(seconds=offset)
        profile = _member_profile(rng, used_phones, used_emails, anchor.astimezone(site_tz).date())
        referrer_index = None
        if index > 0 and rng.random() < REFERRED_SHARE:
            # Referrers are mostly engaged members: weight earlier members by their buying frequency.
            referrer_index = rng.choices(range(index), weights=[w + 0.05 for w in frequency])[0]
        member_plans.append(
            MemberPlan(
                external_id=member_external_id(index),
                joined_at=joined_at,
                referrer_index=referrer_index,
                **profile,
            )
        )
        tenure = offset / (HISTORY_DAYS * 86400)
        dormant = rng.random() < DORMANT_SHARE
        weight = min(rng.lognormvariate(0, FREQUENCY_SIGMA), FREQUENCY_CAP)
        frequency.append(0.0 if dormant else weight * tenure**0.8)
        favourite_categories.append(
            rng.choices(list(CATEGORIES), weights=[c[0] for c in CATEGORIES.values()], k=rng.randint(1, 3))
        )
        favourite_channel.append(rng.choices([c for c, _ in CHANNELS], weights=[w for _, w in CHANNELS])[0])

    # Frequent buyers top up with small baskets, occasional buyers buy bigger items: the basket shrinks as the
    # frequency grows, so heavy buyers don't all end up on the top tier.
    active = [index for index, weight in enumerate(frequency) if weight > 0]
    typical = sorted(frequency[index] for index in active)[len(active) // 2] if active else 1.0
    basket_factor = [
        min(max(rng.lognormvariate(0, 0.3) * (max(weight, 1e-9) / typical) ** -BASKET_ELASTICITY, 0.25), 3.0)
        for weight in frequency
    ]

    order_drafts = []
    if orders and active:
        # Every active member orders at least once; the rest of the orders go to members by their frequency.
        buyers = active[:] if orders >= len(active) else rng.sample(active, orders)
        buyers += rng.choices(range(members), weights=frequency, k=orders - len(buyers))
        category_names = list(CATEGORIES)
        category_weights = [c[0] for c in CATEGORIES.values()]
        for member_index in buyers:
            if rng.random() < 0.7:
                category = rng.choice(favourite_categories[member_index])
            else:
                category = rng.choices(category_names, weights=category_weights)[0]
            channel = favourite_channel[member_index] if rng.random() < 0.75 else rng.choice(CHANNELS)[0]
            _share, median, sigma = CATEGORIES[category]
            quantity = rng.choices([1, 2, 3, 4, 5], weights=[70, 18, 7, 3, 2])[0]
            raw = median * basket_factor[member_index] * rng.lognormvariate(0, sigma) * (1 + 0.35 * (quantity - 1))
            amount = min(max(Decimal(f"{raw:.2f}"), MIN_AMOUNT), MAX_AMOUNT)
            placed_at = _order_time(
                time_rng, member_plans[member_index].joined_at, anchor, site_tz, store=channel == "store"
            )
            order_drafts.append((placed_at, member_index, amount, quantity, category, channel))
    # Chronological, so ids follow time and each member's orders are recorded in order (upgrades in sequence).
    order_drafts.sort(key=lambda draft: (draft[0], draft[1]))
    order_plans = [
        OrderPlan(
            order_id=order_external_id(index),
            member_index=member_index,
            placed_at=placed_at,
            amount=amount,
            quantity=quantity,
            category=category,
            channel=channel,
        )
        for index, (placed_at, member_index, amount, quantity, category, channel) in enumerate(order_drafts)
    ]
    return DemoPlan(members=member_plans, orders=order_plans)


def _member_profile(rng: random.Random, used_phones: set, used_emails: set, today: date) -> dict:
    domain = rng.choices(["example.cn", "example.com"], weights=[3, 2])[0]
    if rng.random() < CHINESE_NAME_SHARE:
        surnames = CHINESE_SURNAMES
        surname, surname_pinyin, _share = rng.choices(surnames, weights=[s[2] for s in surnames])[0]
        given, given_pinyin = rng.choice(CHINESE_GIVEN_NAMES)
        name = surname + given
        local_part = rng.choice(
            [
                f"{surname_pinyin}{given_pinyin}",
                f"{given_pinyin}.{surname_pinyin}",
                f"{surname_pinyin}.{given_pinyin}",
                f"{given_pinyin}{surname_pinyin[0]}",
            ]
        )
        international = rng.random() < 0.05
    else:
        first, last = rng.choice(ENGLISH_FIRST_NAMES), rng.choice(ENGLISH_LAST_NAMES)
        name = f"{first} {last}"
        local_part = rng.choice([f"{first}.{last}", f"{first}{last[0]}", f"{first[0]}{last}"]).lower()
        domain = rng.choices(["example.com", "example.cn"], weights=[4, 1])[0]
        international = rng.random() < 0.6
    if rng.random() < 0.5:
        local_part += str(rng.choice([rng.randint(1, 99), rng.randint(1970, 2005), rng.randint(100, 9999)]))
    email = f"{local_part}@{domain}"
    while email in used_emails:
        email = f"{local_part}{rng.randint(1, 9999)}@{domain}"
    used_emails.add(email)

    phone = _chinese_mobile(rng)
    while phone in used_phones:
        phone = _chinese_mobile(rng)
    used_phones.add(phone)

    regions = INTERNATIONAL_REGIONS if international else CHINA_REGIONS
    region = rng.choices([r for r, _ in regions], weights=[w for _, w in regions])[0]

    birthday = None
    if rng.random() < 0.85:  # some members never fill it in
        age = min(max(int(rng.gauss(32, 9)), 18), 75)
        birthday = date(today.year - age, 1, 1) + timedelta(days=rng.randrange(365))

    email_opt_in = rng.random() < 0.45
    sms_opt_in = rng.random() < (0.55 if email_opt_in else 0.2)
    return {
        "name": name,
        "email": email,
        "phone": phone,
        "birthday": birthday,
        "region": region,
        "email_opt_in": email_opt_in,
        "sms_opt_in": sms_opt_in,
    }


MOBILE_PREFIXES = [
    "130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "153", "155", "156",
    "157", "158", "159", "166", "176", "177", "178", "180", "181", "182", "183", "185", "186", "187", "188",
    "189", "191", "195", "198", "199",
]


def _chinese_mobile(rng: random.Random) -> str:
    return rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"


def _order_time(rng: random.Random, joined_at: datetime, anchor: datetime, site_tz, *, store: bool) -> datetime:
    """A local day after the member joined (sometimes a festival day), at a plausible local hour; strictly between
    the join time and a minute before the anchor."""
    earliest = joined_at + timedelta(minutes=5)
    latest = anchor - timedelta(minutes=1)
    first_day, last_day = earliest.astimezone(site_tz).date(), latest.astimezone(site_tz).date()
    span_days = (last_day - first_day).days
    hours = list(STORE_HOURS) if store else list(range(24))
    hour_weights = [ORDER_HOUR_WEIGHTS[h] for h in hours]
    for _attempt in range(10):
        day = first_day + timedelta(days=rng.randint(0, span_days))
        if rng.random() < FESTIVAL_SHARE:
            festivals = [
                date(year, month, dom)
                for year in range(first_day.year, last_day.year + 1)
                for month, dom in FESTIVAL_DAYS
                if first_day <= date(year, month, dom) <= last_day
            ]
            if festivals:
                day = rng.choice(festivals)
        hour = rng.choices(hours, weights=hour_weights)[0]
        local = datetime(day.year, day.month, day.day, hour, rng.randrange(60), rng.randrange(60), tzinfo=site_tz)
        if earliest <= local <= latest:
            return local
    # The member joined very recently (or the day is cut short): any second inside the window.
    return earliest + timedelta(seconds=rng.randint(0, max(0, int((latest - earliest).total_seconds()))))


class Command(BaseCommand):
    help = (
        "Load realistic demo data (members with Chinese and English names, two years of orders) through the real "
        "services, so points, growth value and tiers follow as from the storefront. Safe to run again: it stops at "
        "once when the demo data is complete and completes an interrupted run."
    )

    def add_arguments(self, parser):
        parser.add_argument("--members", type=int, default=2000, help="How many members (default 2000).")
        parser.add_argument("--orders", type=int, default=20000, help="How many orders (default 20000).")
        parser.add_argument("--seed", type=int, default=42, help="Random seed: the same seed gives the same data.")

    def handle(self, *args, members, orders, seed, **options):
        if members < 0 or orders < 0:
            raise CommandError("--members and --orders cannot be negative.")
        if orders and not members:
            raise CommandError("Orders need members: give --members at least 1.")
        started = time.monotonic()
        demo_members = Member.objects.filter(external_id__startswith=MEMBER_PREFIX)
        demo_orders = Order.objects.filter(order_id__startswith=ORDER_PREFIX)
        member_count, order_count = demo_members.count(), demo_orders.count()
        if member_count >= members and order_count >= orders:
            self.stdout.write(f"Demo data already present ({member_count:,} members, {order_count:,} orders).")
            return

        anchor = self._anchor(seed, members)
        plan = build_plan(seed=seed, members=members, orders=orders, anchor=anchor)
        existing = dict(demo_members.values_list("external_id", "name"))
        mismatched = [m.external_id for m in plan.members if existing.get(m.external_id, m.name) != m.name]
        if mismatched:
            raise CommandError(
                f"Demo members exist that another --seed/--members made ({', '.join(mismatched[:3])}...); "
                "load the demo into a fresh database."
            )
        self.stdout.write(
            f"Seeding demo data: {members:,} members, {orders:,} orders (seed {seed}); "
            f"{member_count:,} members and {order_count:,} orders already there."
        )
        referral_codes = dict(demo_members.values_list("external_id", "referral_code"))
        # Speed, not behaviour: with DEBUG on, Django logs every query, and its SQLite backend runs one more query per
        # logged query to render the parameters.
        with override_settings(DEBUG=False):
            created_members = self._register_members(plan, referral_codes, started)
            created_orders = self._record_orders(plan, demo_orders, started)
        rfm_refresh()  # RFM segments and activity for the demo at once, not after the first night's job
        self._summary(demo_members, demo_orders, created_members, created_orders, started)

    def _anchor(self, seed: int, members: int) -> datetime:
        """"Now" of the first run. An interrupted run's members are already dated from it: recover it from the first
        member's join time, so the orders still to record get the same timestamps as planned."""
        first = Member.objects.filter(external_id=member_external_id(0)).values_list("joined_at", flat=True).first()
        if first is not None:
            return first + timedelta(seconds=first_join_offset(seed, members))
        return timezone.now().replace(microsecond=0)

    def _register_members(self, plan: DemoPlan, referral_codes: dict, started: float) -> int:
        created = 0
        to_register = [m for m in plan.members if m.external_id not in referral_codes]
        for start in range(0, len(to_register), BATCH_SIZE):
            with transaction.atomic():
                for m in to_register[start : start + BATCH_SIZE]:
                    referrer = plan.members[m.referrer_index].external_id if m.referrer_index is not None else None
                    member, was_created = member_register(
                        external_id=m.external_id,
                        email=m.email,
                        phone=m.phone,
                        name=m.name,
                        birthday=m.birthday,
                        region=m.region,
                        email_opt_in=m.email_opt_in,
                        sms_opt_in=m.sms_opt_in,
                        referral_code=referral_codes[referrer] if referrer else None,
                        joined_at=m.joined_at,
                    )
                    referral_codes[m.external_id] = member.referral_code
                    created += was_created
        if to_register:
            self.stdout.write(f"  {created:,} members registered ({time.monotonic() - started:.1f} s)")
        return created

    def _record_orders(self, plan: DemoPlan, demo_orders, started: float) -> int:
        recorded = set(demo_orders.values_list("order_id", flat=True))
        to_record = [o for o in plan.orders if o.order_id not in recorded]
        currency = settings.LOYALTY_CURRENCY
        created = 0
        for start in range(0, len(to_record), BATCH_SIZE):
            with transaction.atomic():
                for o in to_record[start : start + BATCH_SIZE]:
                    try:
                        result = order_record(
                            order_id=o.order_id,
                            customer_id=plan.members[o.member_index].external_id,
                            placed_at=o.placed_at,
                            amount=o.amount,
                            currency=currency,
                            quantity=o.quantity,
                            category=o.category,
                            channel=o.channel,
                        )
                    except OrderConflict as error:
                        raise CommandError(
                            f"Order {o.order_id} exists with other data (made by another --seed/--members/--orders); "
                            "load the demo into a fresh database."
                        ) from error
                    created += result.created
            done = start + min(BATCH_SIZE, len(to_record) - start)
            if done % PROGRESS_EVERY == 0 or done == len(to_record):
                self.stdout.write(
                    f"  {done:,} / {len(to_record):,} orders recorded ({time.monotonic() - started:.1f} s)"
                )
        return created

    def _summary(self, demo_members, demo_orders, created_members, created_orders, started) -> None:
        totals = demo_orders.aggregate(points=Sum("points_earned"), growth=Sum("growth_earned"), spend=Sum("amount"))
        tiers = (
            demo_members.values("tier__name", "tier__rank").annotate(count=Count("id")).order_by("tier__rank")
        )
        per_tier = ", ".join(f"{row['tier__name'] or 'no tier'} {row['count']:,}" for row in tiers)
        referred = demo_members.filter(referred_by__isnull=False).count()
        dormant = demo_members.filter(order_count=0).count()
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready: {demo_members.count():,} members ({created_members:,} new, {referred:,} referred, "
                f"{dormant:,} without orders), {demo_orders.count():,} orders ({created_orders:,} new), "
                f"spend {totals['spend'] or 0:,.2f} {settings.LOYALTY_CURRENCY}, "
                f"points issued on orders {totals['points'] or 0:,}, growth value {totals['growth'] or 0:,}."
            )
        )
        self.stdout.write(f"Members per tier: {per_tier}.")
        self.stdout.write(f"Elapsed: {time.monotonic() - started:.1f} s")

