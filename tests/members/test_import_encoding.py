"""The order file's encoding when it is not UTF-8: charset-normalizer judges between GB18030 and cp1252, so a
Western file is not read as GB18030 (where "Müller" decodes, without an error, as "M黮ler"); the encoding chosen is
in the report, the run's options and the command's output; --encoding still wins."""
import io

import pytest
from django.core.management import call_command

from members.importing.orders import orders_import
from members.importing.reading import detect_encoding
from members.models import Member

pytestmark = pytest.mark.django_db
HEADER = "order_id,customer_id,name,placed_at,amount\n"
WESTERN = HEADER + "A1,c-1,Müller,2024-03-05 10:00:00,10.00\nA2,c-2,Café Zoë,2024-03-05 11:00:00,12.00\n"
CHINESE = "订单号,会员编号,姓名,下单时间,实付金额\nDD1,HY-01,王芳,2024-03-05 09:00:00,199.00\nDD2,HY-02,李雷,2024-03-06 10:30:00,88.50\n"


def write(tmp_path, text, encoding):
    path = tmp_path / "orders.csv"
    path.write_bytes(text.encode(encoding))
    return path


def test_a_cp1252_file_imports_with_its_accented_names_intact(tmp_path):
    report = orders_import(path=write(tmp_path, WESTERN, "cp1252"), workers=1)

    assert (report.created, report.failed, report.encoding) == (2, 0, "cp1252")
    assert dict(Member.objects.values_list("external_id", "name")) == {"c-1": "Müller", "c-2": "Café Zoë"}


def test_the_encoding_chosen_is_kept_in_the_runs_options(tmp_path):
    report = orders_import(path=write(tmp_path, WESTERN, "cp1252"), workers=1)

    assert report.run.options["encoding"] == "cp1252"


def test_a_gbk_file_with_chinese_names_still_imports_as_gb18030(tmp_path):
    report = orders_import(path=write(tmp_path, CHINESE, "gbk"), workers=1)

    assert (report.created, report.encoding) == (2, "gb18030")
    assert dict(Member.objects.values_list("external_id", "name")) == {"HY-01": "王芳", "HY-02": "李雷"}


def test_a_single_chinese_character_is_still_read_as_gb18030():
    assert detect_encoding("a,b\n1,李\n".encode("gbk")) == "gb18030"


def test_an_explicit_encoding_wins_over_detection(tmp_path):
    report = orders_import(path=write(tmp_path, WESTERN, "cp1252"), encoding="gb18030", workers=1)

    assert report.encoding == "gb18030"
    assert Member.objects.get(external_id="c-1").name != "Müller"


def test_the_command_says_which_encoding_it_read(tmp_path):
    out = io.StringIO()

    call_command("import_orders", str(write(tmp_path, WESTERN, "cp1252")), "--workers", "1", stdout=out)

    assert "encoding cp1252" in out.getvalue()


def test_a_western_file_with_many_accents_before_commas_is_read_as_cp1252_not_refused():
    sample = ("id,name,city\n" + "".join(f"{i},José André,Orléans é\n" for i in range(40))).encode("cp1252")

    assert detect_encoding(sample) == "cp1252"


def test_a_gbk_file_with_a_stray_byte_is_still_judged_gb18030():
    sample = "订单号,姓名\nDD1,王芳\n".encode("gbk") + b"DD2,\xff\n" + "DD3,李雷\n".encode("gbk")

    assert detect_encoding(sample) == "gb18030"
