"""The default message templates, in English and Simplified Chinese, by email and SMS: a starting point staff edit in
the admin (Messages › Message templates). Created only when missing, so staff's edits survive a re-run.

Variables (campaigns.messaging.selectors): name, external_id, points_balance, points_expiring, points_expiry_date,
tier, previous_tier (tier-up), next_tier, days_since_last_order; the campaigns add coupon_code, coupon_value,
coupon_expires and bonus_points where they apply. All are marketing messages (consent needed).
"""
from django.db import migrations

EN_DATE = '|date:"j F Y"'
ZH_DATE = '|date:"Y年n月j日"'

# code: (description, {language: (email subject, email body, sms body)})
TEMPLATES = {
    "welcome": (
        "A member signs up.",
        {
            "en": (
                "Welcome to the club, {{ name|default:\"friend\" }}!",
                "Hi {{ name|default:\"there\" }},\n\n"
                "Welcome to our membership programme. You start as {{ tier|default:\"a member\" }}"
                "{% if points_balance %} with {{ points_balance|intcomma }} points{% endif %}.\n"
                "Every order earns points, and your orders bring you closer to {{ next_tier|default:\"our top tier\" }}."
                "{% if coupon_code %}\n\nA welcome gift: {{ coupon_value }} off with the code {{ coupon_code }}.{% endif %}",
                "Welcome, {{ name|default:\"friend\" }}! You are now {{ tier|default:\"a member\" }}: every order earns "
                "points.{% if coupon_code %} Welcome gift: code {{ coupon_code }}.{% endif %}",
            ),
            "zh-hans": (
                "欢迎加入会员，{{ name|default:\"亲爱的会员\" }}！",
                "{{ name|default:\"亲爱的会员\" }}，您好：\n\n"
                "欢迎加入我们的会员计划。您当前的等级是{{ tier|default:\"普通会员\" }}"
                "{% if points_balance %}，积分余额 {{ points_balance }}{% endif %}。\n"
                "每笔订单都能赚取积分，助您升级到{{ next_tier|default:\"更高等级\" }}。"
                "{% if coupon_code %}\n\n新人礼：优惠码 {{ coupon_code }}，立减{{ coupon_value }}。{% endif %}",
                "欢迎加入会员，{{ name|default:\"亲爱的会员\" }}！您当前等级：{{ tier|default:\"普通会员\" }}，每笔订单都能赚积分。"
                "{% if coupon_code %}新人礼优惠码：{{ coupon_code }}。{% endif %}",
            ),
        },
    ),
    "birthday": (
        "On the member's birthday (the birthday gift).",
        {
            "en": (
                "Happy birthday, {{ name|default:\"friend\" }}!",
                "Happy birthday, {{ name|default:\"friend\" }}!\n\n"
                "{% if bonus_points %}We have added {{ bonus_points|intcomma }} birthday points to your account. {% endif %}"
                "{% if coupon_code %}Your birthday gift: {{ coupon_value }} off with the code {{ coupon_code }}. {% endif %}"
                "You now have {{ points_balance|intcomma }} points.",
                "Happy birthday, {{ name|default:\"friend\" }}!{% if bonus_points %} +{{ bonus_points }} birthday points."
                "{% endif %}{% if coupon_code %} Gift code: {{ coupon_code }}.{% endif %}",
            ),
            "zh-hans": (
                "生日快乐，{{ name|default:\"亲爱的会员\" }}！",
                "{{ name|default:\"亲爱的会员\" }}，祝您生日快乐！\n\n"
                "{% if bonus_points %}我们已为您送上 {{ bonus_points }} 生日积分。{% endif %}"
                "{% if coupon_code %}生日礼：优惠码 {{ coupon_code }}，立减{{ coupon_value }}。{% endif %}"
                "您当前的积分余额为 {{ points_balance }}。",
                "{{ name|default:\"亲爱的会员\" }}，生日快乐！{% if bonus_points %}已送您 {{ bonus_points }} 生日积分。{% endif %}"
                "{% if coupon_code %}生日礼优惠码：{{ coupon_code }}。{% endif %}",
            ),
        },
    ),
    "referral_reward": (
        "A friend the member invited joined or ordered.",
        {
            "en": (
                "Thank you for inviting a friend",
                "Hi {{ name|default:\"there\" }},\n\n"
                "Your friend has joined thanks to you."
                "{% if bonus_points %} {{ bonus_points|intcomma }} points have been added to your account.{% endif %}"
                "{% if coupon_code %} Your reward: {{ coupon_value }} off with the code {{ coupon_code }}.{% endif %}\n"
                "Your balance: {{ points_balance|intcomma }} points.",
                "Thanks for inviting a friend!{% if bonus_points %} +{{ bonus_points }} points.{% endif %}"
                "{% if coupon_code %} Reward code: {{ coupon_code }}.{% endif %} Balance: {{ points_balance }}.",
            ),
            "zh-hans": (
                "感谢您邀请好友",
                "{{ name|default:\"亲爱的会员\" }}，您好：\n\n"
                "您邀请的好友已加入。{% if bonus_points %}{{ bonus_points }} 积分已发放到您的账户。{% endif %}"
                "{% if coupon_code %}奖励：优惠码 {{ coupon_code }}，立减{{ coupon_value }}。{% endif %}\n"
                "当前积分余额：{{ points_balance }}。",
                "感谢邀请好友！{% if bonus_points %}已送您 {{ bonus_points }} 积分。{% endif %}"
                "{% if coupon_code %}奖励优惠码：{{ coupon_code }}。{% endif %}积分余额：{{ points_balance }}。",
            ),
        },
    ),
    "win_back": (
        "A dormant member (no order for a while) gets an offer.",
        {
            "en": (
                "We miss you, {{ name|default:\"friend\" }}",
                "Hi {{ name|default:\"there\" }},\n\n"
                "{% if days_since_last_order %}It has been {{ days_since_last_order }} days since your last order. "
                "{% endif %}We have kept something for you"
                "{% if coupon_code %}: {{ coupon_value }} off with the code {{ coupon_code }}"
                "{% if coupon_expires %}, until {{ coupon_expires" + EN_DATE + " }}{% endif %}{% endif %}.\n"
                "You still have {{ points_balance|intcomma }} points to spend.",
                "We miss you, {{ name|default:\"friend\" }}!{% if coupon_code %} {{ coupon_value }} off with code "
                "{{ coupon_code }}{% if coupon_expires %} until {{ coupon_expires" + EN_DATE + " }}{% endif %}.{% endif %}"
                " Points: {{ points_balance }}.",
            ),
            "zh-hans": (
                "{{ name|default:\"亲爱的会员\" }}，好久不见",
                "{{ name|default:\"亲爱的会员\" }}，您好：\n\n"
                "{% if days_since_last_order %}距离您上次下单已有 {{ days_since_last_order }} 天。{% endif %}"
                "我们为您准备了专属优惠"
                "{% if coupon_code %}：优惠码 {{ coupon_code }}，立减{{ coupon_value }}"
                "{% if coupon_expires %}，有效期至{{ coupon_expires" + ZH_DATE + " }}{% endif %}{% endif %}。\n"
                "您还有 {{ points_balance }} 积分可以使用。",
                "{{ name|default:\"亲爱的会员\" }}，好久不见！{% if coupon_code %}专属优惠码 {{ coupon_code }}，立减{{ coupon_value }}"
                "{% if coupon_expires %}，{{ coupon_expires" + ZH_DATE + " }}前有效{% endif %}。{% endif %}"
                "积分余额：{{ points_balance }}。",
            ),
        },
    ),
    "tier_up": (
        "The member moved up a tier.",
        {
            "en": (
                "Congratulations: you are now {{ tier }}!",
                "Congratulations, {{ name|default:\"friend\" }}!\n\n"
                "You have moved up{% if previous_tier %} from {{ previous_tier }}{% endif %} to {{ tier }}. "
                "Your new benefits apply from your next order."
                "{% if next_tier %}\nNext up: {{ next_tier }}.{% endif %}",
                "Congratulations, {{ name|default:\"friend\" }}! You are now {{ tier }}. Your new benefits apply from "
                "your next order.",
            ),
            "zh-hans": (
                "恭喜您升级为{{ tier }}！",
                "恭喜您，{{ name|default:\"亲爱的会员\" }}！\n\n"
                "您已{% if previous_tier %}从{{ previous_tier }}{% endif %}升级为{{ tier }}，新的会员权益从下一笔订单起生效。"
                "{% if next_tier %}\n下一个等级：{{ next_tier }}。{% endif %}",
                "恭喜{{ name|default:\"亲爱的会员\" }}升级为{{ tier }}！新权益从下一笔订单起生效。",
            ),
        },
    ),
    "points_expiring": (
        "The member's points expire soon (the reminder job).",
        {
            "en": (
                "{{ points_expiring|intcomma }} of your points expire soon",
                "Hi {{ name|default:\"there\" }},\n\n"
                "{{ points_expiring|intcomma }} of your points expire soon: the first ones can be used until "
                "{{ points_expiry_date" + EN_DATE + " }}.\n"
                "Your balance: {{ points_balance|intcomma }} points. Use them on your next order or on a reward.",
                "{{ points_expiring }} of your points expire soon (first on {{ points_expiry_date" + EN_DATE + " }}). "
                "Balance: {{ points_balance }}.",
            ),
            "zh-hans": (
                "您有 {{ points_expiring }} 积分即将过期",
                "{{ name|default:\"亲爱的会员\" }}，您好：\n\n"
                "您有 {{ points_expiring }} 积分即将过期，最早一批可使用至{{ points_expiry_date" + ZH_DATE + " }}。\n"
                "当前积分余额：{{ points_balance }}。下单抵现或兑换礼品，别让积分白白过期。",
                "您有 {{ points_expiring }} 积分即将过期（最早{{ points_expiry_date" + ZH_DATE + " }}到期），"
                "积分余额 {{ points_balance }}。",
            ),
        },
    ),
    "coupon_granted": (
        "A coupon was given to the member.",
        {
            "en": (
                "A coupon for you: {{ coupon_value }} off",
                "Hi {{ name|default:\"there\" }},\n\n"
                "Here is a coupon for you: {{ coupon_value }} off with the code {{ coupon_code }}"
                "{% if coupon_expires %}, valid until {{ coupon_expires" + EN_DATE + " }}{% endif %}.",
                "A coupon for you: {{ coupon_value }} off with code {{ coupon_code }}"
                "{% if coupon_expires %}, until {{ coupon_expires" + EN_DATE + " }}{% endif %}.",
            ),
            "zh-hans": (
                "送您一张优惠券：立减{{ coupon_value }}",
                "{{ name|default:\"亲爱的会员\" }}，您好：\n\n"
                "送您一张优惠券：优惠码 {{ coupon_code }}，立减{{ coupon_value }}"
                "{% if coupon_expires %}，有效期至{{ coupon_expires" + ZH_DATE + " }}{% endif %}。",
                "送您优惠券：优惠码 {{ coupon_code }}，立减{{ coupon_value }}"
                "{% if coupon_expires %}，{{ coupon_expires" + ZH_DATE + " }}前有效{% endif %}。",
            ),
        },
    ),
    "bonus_points": (
        "Bonus points were credited to the member (a campaign, a task).",
        {
            "en": (
                "{{ bonus_points|intcomma }} bonus points for you",
                "Hi {{ name|default:\"there\" }},\n\n"
                "We have added {{ bonus_points|intcomma }} bonus points to your account. "
                "Your balance: {{ points_balance|intcomma }} points.",
                "+{{ bonus_points }} bonus points! Balance: {{ points_balance }}.",
            ),
            "zh-hans": (
                "送您 {{ bonus_points }} 奖励积分",
                "{{ name|default:\"亲爱的会员\" }}，您好：\n\n"
                "我们已为您发放 {{ bonus_points }} 奖励积分。当前积分余额：{{ points_balance }}。",
                "已为您发放 {{ bonus_points }} 奖励积分，积分余额 {{ points_balance }}。",
            ),
        },
    ),
}


def install(apps, schema_editor):
    MessageTemplate = apps.get_model("messaging", "MessageTemplate")
    for code, (description, languages) in TEMPLATES.items():
        for language, (subject, email_body, sms_body) in languages.items():
            for channel, values in (
                ("email", {"subject": subject, "body": email_body}),
                ("sms", {"subject": "", "body": sms_body}),
            ):
                MessageTemplate.objects.get_or_create(
                    code=code, channel=channel, language=language, defaults={"description": description, **values}
                )


def uninstall(apps, schema_editor):
    MessageTemplate = apps.get_model("messaging", "MessageTemplate")
    MessageTemplate.objects.filter(code__in=list(TEMPLATES)).delete()


class Migration(migrations.Migration):
    dependencies = [("messaging", "0001_initial")]

    operations = [migrations.RunPython(install, uninstall)]
