"""Languages: the Simplified Chinese catalogues are complete and compiled, and the admin and the API switch to them.

Two catalogues, each a .po compiled to the django.mo next to it (both committed; `make messages` regenerates them):
locale/zh_Hans for every string marked in our code and templates, locale/vendor/zh_Hans for django-unfold's own
strings (its package ships no Chinese). The .po files are read here with a few lines of parsing (no polib); the .mo
files with the standard library's gettext.
"""
import ast
import gettext
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import unfold
from django.conf import settings
from django.urls import reverse
from django.utils import translation

ROOT = Path(settings.BASE_DIR)
LOCALE_DIR = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES"
PO_FILE = LOCALE_DIR / "django.po"
VENDOR_PO_FILE = ROOT / "locale" / "vendor" / "zh_Hans" / "LC_MESSAGES" / "django.po"
CATALOGUES = [pytest.param(PO_FILE, id="ours"), pytest.param(VENDOR_PO_FILE, id="unfold")]
# What `make messages` leaves out (the Makefile's MESSAGES_IGNORE): no strings for users there.
NOT_SCANNED = (".venv", "bench", "tests", "var", "staticfiles", "node_modules", "locale", ".git")

MSGFMT = shutil.which("msgfmt")
XGETTEXT = shutil.which("xgettext")
NO_MSGFMT = "msgfmt is not installed (Debian package `gettext`): the compiled catalogue cannot be checked"
NO_XGETTEXT = "xgettext is not installed (Debian package `gettext`): the marked strings cannot be extracted"


def po_entries(path: Path) -> list[dict]:
    """The entries of a .po file: msgctxt, msgid, msgid_plural (when set), msgstr as {index: text} (None for a
    singular entry), the flags, and whether it is obsolete (#~). The header (msgid "") is left out."""
    entries, entry, key = [], None, None

    def flush():
        if entry is not None and entry.get("msgid"):
            entries.append(entry)

    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            flush()
            entry, key = None, None
            continue
        if entry is None:
            entry = {"msgctxt": None, "msgstr": {}, "flags": set(), "obsolete": False}
        if line.startswith("#~"):
            entry["obsolete"] = True
            continue
        if line.startswith("#,"):
            entry["flags"].update(flag.strip() for flag in line[2:].split(","))
            continue
        if line.startswith("#"):
            continue
        match = re.match(r'^(msgctxt|msgid_plural|msgid|msgstr)(?:\[(\d+)\])?\s+(".*")$', line)
        if match:
            name, index, text = match.group(1), match.group(2), ast.literal_eval(match.group(3))
            key = (name, None if index is None else int(index))
        else:  # a continuation line
            text = ast.literal_eval(line)
        name, index = key
        if name == "msgstr":
            entry["msgstr"][index] = entry["msgstr"].get(index, "") + text
        else:
            entry[name] = (entry.get(name) or "") + text
    flush()
    return entries


def catalogue_key(entry: dict) -> tuple:
    return (entry["msgctxt"], entry["msgid"])


def mo_catalogue(path: Path) -> dict:
    """The compiled catalogue as gettext reads it: {msgid (with "ctx\\x04" for a context): text, or
    (msgid, n): text for plural forms}, without the header."""
    with path.open("rb") as handle:
        catalogue = dict(gettext.GNUTranslations(handle)._catalog)
    catalogue.pop("", None)
    return catalogue


def expected_mo_catalogue(entries: list[dict]) -> dict:
    catalogue = {}
    for entry in entries:
        if entry["obsolete"] or "fuzzy" in entry["flags"]:
            continue
        msgid = entry["msgid"] if entry["msgctxt"] is None else f"{entry['msgctxt']}\x04{entry['msgid']}"
        if "msgid_plural" in entry:
            for index, text in entry["msgstr"].items():
                catalogue[(msgid, index)] = text
        else:
            catalogue[msgid] = entry["msgstr"][None]
    return catalogue


@pytest.fixture(autouse=True)
def _default_language_afterwards():
    """A request in Chinese leaves Chinese active in this thread (LocaleMiddleware does not switch back)."""
    yield
    translation.deactivate()


# --- The catalogue --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("po_file", CATALOGUES)
def test_the_catalogue_has_no_untranslated_entry(po_file):
    entries = [entry for entry in po_entries(po_file) if not entry["obsolete"]]
    assert len(entries) > 100  # the whole product (or package), not a sample

    untranslated = [entry["msgid"] for entry in entries if not all(entry["msgstr"].values())]

    assert untranslated == []


@pytest.mark.parametrize("po_file", CATALOGUES)
def test_the_catalogue_has_no_fuzzy_entry(po_file):
    fuzzy = [entry["msgid"] for entry in po_entries(po_file) if "fuzzy" in entry["flags"]]

    assert fuzzy == []


@pytest.mark.parametrize("po_file", CATALOGUES)
def test_the_catalogue_header_declares_utf8_and_one_plural_form(po_file):
    header = po_file.read_text(encoding="utf-8").split("\n\n", 1)[0]

    assert "charset=UTF-8" in header
    assert "Plural-Forms: nplurals=1; plural=0;" in header
    assert "#, fuzzy" not in header  # msgfmt would ignore a fuzzy header, and its charset with it


@pytest.mark.parametrize("po_file", CATALOGUES)
def test_every_translation_keeps_the_placeholders_of_its_source(po_file):
    placeholder = re.compile(r"%\([a-z_]+\)[-+ #0]*\d*[sdrif]|%%|\{[a-z_]*\}|<[^>]+>")
    differing = []
    for entry in po_entries(po_file):
        sources = [entry["msgid"], entry.get("msgid_plural", entry["msgid"])]
        wanted = sorted(placeholder.findall(sources[-1]))
        for text in entry["msgstr"].values():
            if sorted(placeholder.findall(text)) != wanted:
                differing.append((entry["msgid"], text))

    assert differing == []


@pytest.mark.parametrize("po_file", CATALOGUES)
def test_the_compiled_catalogue_holds_exactly_the_translations_of_the_po(po_file):
    """The committed .mo is up to date: compiled from the committed .po, nothing more, nothing less."""
    assert mo_catalogue(po_file.with_suffix(".mo")) == expected_mo_catalogue(po_entries(po_file))


@pytest.mark.skipif(MSGFMT is None, reason=NO_MSGFMT)
@pytest.mark.parametrize("po_file", CATALOGUES)
def test_the_po_compiles_with_msgfmt_check_to_the_committed_mo(po_file, tmp_path):
    compiled = tmp_path / "django.mo"

    result = subprocess.run([MSGFMT, "--check", "-o", str(compiled), str(po_file)], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert mo_catalogue(compiled) == mo_catalogue(po_file.with_suffix(".mo"))


def extracted_strings(source: Path, *ignore: str) -> set[tuple]:
    """What `makemessages` finds in `source` (a copy: it writes source/locale), as catalogue keys. Run without
    settings, so it writes only under its working directory (settings would add LOCALE_PATHS, the committed
    catalogues)."""
    (source / "locale").mkdir()
    env = {"PATH": str(Path(XGETTEXT).parent), "LANG": "C.UTF-8"}
    command = [sys.executable, "-m", "django", "makemessages", "--locale", "zh_Hans", "--no-location"]
    command += [f"--ignore={pattern}" for pattern in ignore]
    result = subprocess.run(command, cwd=source, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return {catalogue_key(entry) for entry in po_entries(source / "locale/zh_Hans/LC_MESSAGES/django.po")}


def catalogue_keys(po_file: Path) -> set[tuple]:
    return {catalogue_key(entry) for entry in po_entries(po_file) if not entry["obsolete"]}


@pytest.mark.skipif(XGETTEXT is None, reason=NO_XGETTEXT)
def test_every_string_marked_for_translation_is_in_the_catalogue(tmp_path):
    """`makemessages` run afresh on a copy of the code finds no string that the catalogue lacks: a new _() or
    {% translate %} fails here until `make messages` and a translation."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SCANNED), symlinks=True)

    extracted = extracted_strings(source)

    assert len(extracted) > 500
    assert sorted(extracted - catalogue_keys(PO_FILE), key=str) == []


@pytest.mark.skipif(XGETTEXT is None, reason=NO_XGETTEXT)
def test_every_string_of_the_installed_unfold_is_in_the_vendor_catalogue(tmp_path):
    """After an upgrade of django-unfold, its new strings fail here until `make messages` and a translation."""
    source = tmp_path / "unfold-source"
    source.mkdir()
    shutil.copytree(Path(unfold.__file__).parent, source / "unfold")

    extracted = extracted_strings(source, "unfold/static/*")

    assert len(extracted) > 100
    assert sorted(extracted - catalogue_keys(VENDOR_PO_FILE), key=str) == []


# --- Switching: the admin ------------------------------------------------------------------------------------------


def switch_language(client, language):
    response = client.post(reverse("set_language"), {"language": language, "next": reverse("admin:index")})
    assert response.status_code == 302
    return response


def test_the_admin_is_in_english_by_default(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()

    assert '<html lang="en"' in page
    assert "Points ledger" in page
    assert "积分流水" not in page


def test_the_admin_shows_a_language_menu_posting_to_set_language(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()

    assert f'action="{reverse("set_language")}"' in page
    assert 'name="language" type="hidden" value="zh-hans"' in page
    assert "简体中文" in page


def test_the_admin_index_renders_in_chinese_after_switching_through_set_language(admin_client):
    switch_language(admin_client, "zh-hans")

    page = admin_client.get(reverse("admin:index")).content.decode()

    assert '<html lang="zh-hans"' in page
    assert "积分流水" in page  # the sidebar (our catalogue)
    assert "会员" in page
    assert "Points ledger" not in page


def test_unfold_s_own_admin_texts_are_chinese_after_switching(admin_client):
    """Unfold ships no Chinese: its strings come from locale/vendor."""
    switch_language(admin_client, "zh-hans")

    page = admin_client.get(reverse("admin:index")).content.decode()

    assert "所有应用" in page  # "All applications"
    assert "搜索应用和模型…" in page  # "Search apps and models..."
    assert "All applications" not in page


def test_a_member_change_page_renders_in_chinese_after_switching(admin_client, member):
    switch_language(admin_client, "zh-hans")

    response = admin_client.get(reverse("admin:members_member_change", args=[member.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert "可用积分" in page  # a field label from the catalogue (points_balance)
    assert "成长值" in page
    assert "保存" in page  # Django's own admin catalogue: the Save button
    assert "available points" not in page.lower()


def test_switching_back_to_english_restores_the_english_admin(admin_client):
    switch_language(admin_client, "zh-hans")
    switch_language(admin_client, "en")

    page = admin_client.get(reverse("admin:index")).content.decode()

    assert "Points ledger" in page
    assert "积分流水" not in page


# --- Switching: the API --------------------------------------------------------------------------------------------


def unknown_member(api_client, **headers):
    return api_client.get(reverse("v1:member-detail", args=["nobody"]), **headers)


def test_an_api_error_detail_is_in_english_by_default(api_client):
    response = unknown_member(api_client)

    assert response.json() == {"code": "member_not_found", "detail": "No member with this customer id."}


def test_an_api_error_detail_is_in_chinese_with_accept_language_zh_hans(api_client):
    response = unknown_member(api_client, HTTP_ACCEPT_LANGUAGE="zh-hans")

    assert response.status_code == 404
    assert response.json() == {"code": "member_not_found", "detail": "没有此客户 ID 的会员。"}  # the code stays
    assert response["Content-Language"] == "zh-hans"


def test_an_api_error_detail_is_in_chinese_with_a_browser_style_zh_cn_header(api_client):
    response = unknown_member(api_client, HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9,en;q=0.8")

    assert response.json()["detail"] == "没有此客户 ID 的会员。"


def test_a_formatted_api_error_detail_is_in_chinese_with_accept_language(api_client, member):
    """A domain error raised with a formatted message (members.services: the currency), not a class default."""
    body = {"order_id": "A-1", "customer_id": member.external_id, "placed_at": "2024-01-01T10:00:00+08:00",
            "amount": "10.00", "currency": "XYZ"}

    response = api_client.post(reverse("v1:order-record"), body, format="json", HTTP_ACCEPT_LANGUAGE="zh-hans")

    assert response.status_code == 400
    assert response.json()["code"] == "unsupported_currency"
    assert response.json()["detail"] == f"本系统以 {settings.LOYALTY_CURRENCY} 记录订单。"


def test_api_field_errors_are_in_chinese_with_accept_language(api_client, member):
    body = {"order_id": "A-1", "customer_id": member.external_id, "placed_at": "2024-01-01T10:00:00+08:00"}

    response = api_client.post(reverse("v1:order-record"), body, format="json", HTTP_ACCEPT_LANGUAGE="zh-hans")

    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid",
        "detail": "请求中有无效字段。",  # ours (members.api_errors)
        "errors": {"amount": ["该字段是必填项。"]},  # Django REST framework's own catalogue
    }


# --- Words with two meanings ----------------------------------------------------------------------------------------
# English words identified as meaning two things in the console, each meaning with its own Chinese word. The default
# entry keeps one meaning; every other meaning is marked with a message context (pgettext) where it is used. A new
# meaning written without its context would show the default's Chinese: add it here with its expected word.

def _zh(text) -> str:
    with translation.override("zh-hans"):
        return str(text)


def test_an_active_member_is_huoyue_while_a_switch_that_is_on_is_qiyong():
    from members.models import ActivityStatus
    from members.webhooks.models import WebhookSubscription

    assert _zh(ActivityStatus.ACTIVE.label) == "活跃"
    assert _zh(WebhookSubscription._meta.get_field("active").verbose_name) == "启用"


def test_orders_as_a_page_are_dingdan_while_a_member_s_count_of_orders_is_dingdanshu():
    from members.models import ImportRun, Member, Order

    assert _zh(Order._meta.verbose_name_plural) == "订单"
    assert _zh(ImportRun.Kind.ORDERS.label) == "订单"
    assert _zh(Member._meta.get_field("order_count").verbose_name) == "订单数"


def test_every_meaning_of_a_two_meaning_word_has_its_own_translated_entry():
    entries = {catalogue_key(entry): entry["msgstr"].get(None) for entry in po_entries(PO_FILE) if not entry["obsolete"]}
    expected = {
        (None, "active"): "启用",
        ("member activity", "active"): "活跃",
        (None, "orders"): "订单",
        ("count label", "orders"): "订单数",
        ("after a number", "orders"): "笔订单",
    }
    assert {key: entries.get(key) for key in expected} == expected


def test_numbers_in_the_chinese_console_are_grouped_by_thousands():
    from django.contrib.humanize.templatetags.humanize import intcomma
    from django.utils.formats import number_format

    with translation.override("zh-hans"):
        assert intcomma(1234567) == "1,234,567"
        assert number_format(Decimal("1234567.50"), decimal_pos=2, force_grouping=True) == "1,234,567.50"
