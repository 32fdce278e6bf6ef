"""The import's accounting identity against lines a bulk loader or a decoder treats specially (issue 18): PostgreSQL
COPY's end-of-data marker `\\.`, its NULL marker `\\N`, backslashes, lone carriage returns, invalid bytes under the
file's encoding and very long cells. Whatever a line holds, it is stored literally or failed with its line number
and a bounded reason; read = created + duplicates + conflicts + failed; a run again recovers nothing lost because
nothing was. On SQLite (rows parsed in Python) and PostgreSQL (COPY, re-read by the Python parser when its count
differs from the block's lines)."""
import pytest
from django.core.management import call_command

from members.importing.orders import orders_import
from members.importing.reading import ImportFileError, inspect_file, read_blocks
from members.models import ImportRowError, Member, Order

HEADER = "order_id,customer_id,name,phone,placed_at,amount,status\n"


def write(tmp_path, content, name="orders.csv"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def good_rows(count, prefix="G"):
    return [f"{prefix}{n},c-{n % 50},Name {n},,2024-03-05 10:00:00,{10 + n % 7}.50,paid" for n in range(count)]


def identity_holds(report):
    return report.rows_read == report.created + report.duplicates + report.conflicts + report.failed


@pytest.mark.django_db
def test_a_copy_end_of_data_marker_line_among_a_thousand_good_rows_loses_none_of_them(tmp_path):
    lines = good_rows(1000)
    lines.insert(10, "\\.")  # line 12: alone on its line, COPY's end of data
    path = write(tmp_path, HEADER + "\n".join(lines) + "\n")

    report = orders_import(path=path, workers=1)

    assert Order.objects.count() == 1000
    assert (report.rows_read, report.created, report.failed) == (1001, 1000, 1)
    assert [line for line, _reference, _reason in report.errors] == [12]
    assert identity_holds(report)


@pytest.mark.django_db
def test_copy_null_markers_and_backslashes_in_cells_are_stored_literally(tmp_path):
    lines = good_rows(1000)
    lines[100] = "B1,c-1,\\N,,2024-03-05 10:00:00,10.00,paid"
    lines[200] = "B2,c-2,back\\slash \\t\\\\,,2024-03-05 10:00:00,10.00,paid"
    lines[300] = "B3,c-3,\\.,,2024-03-05 10:00:00,10.00,paid"
    path = write(tmp_path, HEADER + "\n".join(lines) + "\n")

    report = orders_import(path=path, workers=1)

    assert (report.rows_read, report.created, report.failed) == (1000, 1000, 0)
    assert Order.objects.get(order_id="B1").member.name == "\\N"
    assert Order.objects.get(order_id="B2").member.name == "back\\slash \\t\\\\"
    assert Order.objects.get(order_id="B3").member.name == "\\."


@pytest.mark.django_db
def test_an_end_of_data_marker_in_every_block_loses_no_good_row_and_a_rerun_counts_them_all_duplicates(tmp_path):
    lines = []
    for n, row in enumerate(good_rows(300)):
        lines.append(row)
        if n % 40 == 5:
            lines.append("\\.")
    path = write(tmp_path, HEADER + "\n".join(lines) + "\n")

    first = orders_import(path=path, workers=1, block_bytes=1000)
    again = orders_import(path=path, workers=1, block_bytes=1000)

    assert (first.rows_read, first.created, first.failed) == (308, 300, 8)
    assert (again.rows_read, again.duplicates, again.failed) == (308, 300, 8)
    assert identity_holds(first) and identity_holds(again)


@pytest.mark.django_db
def test_the_command_reports_every_line_of_a_file_with_an_end_of_data_marker(tmp_path, capsys):
    lines = good_rows(50)
    lines.insert(3, "\\.")
    path = write(tmp_path, HEADER + "\n".join(lines) + "\n")

    call_command("import_orders", str(path), "--workers", "1")

    out = capsys.readouterr().out
    assert "rows read 51  ·  created 50  ·  duplicates 0  ·  conflicts 0  ·  failed 1" in out
    assert "line 5:" in out


@pytest.mark.django_db
def test_invalid_bytes_under_an_explicit_encoding_fail_their_line_instead_of_importing_replacement_characters(
    tmp_path,
):
    content = (HEADER.encode() + "G1,c-1,王芳,,2024-03-05 10:00:00,10.00,paid\n".encode("gbk")
               + b"G2,c-2,\xff\xfe,,2024-03-05 10:00:00,10.00,paid\n"
               + "G3,c-3,李雷,,2024-03-05 10:00:00,10.00,paid\n".encode("gbk"))
    path = write(tmp_path, content)

    report = orders_import(path=path, encoding="gbk", workers=1)

    assert (report.rows_read, report.created, report.failed) == (3, 2, 1)
    assert report.errors[0][0] == 3 and "gbk" in report.errors[0][2]
    assert not Member.objects.filter(name__contains="\ufffd").exists()
    assert set(Order.objects.values_list("order_id", flat=True)) == {"G1", "G3"}


@pytest.mark.django_db
def test_invalid_utf8_after_the_detection_sample_fails_its_line(tmp_path):
    lines = good_rows(3000)  # past the 64 KB the encoding is detected on
    body = HEADER.encode() + "\n".join(lines).encode() + b"\nX1,c-1,Ann\xc3\x28,,2024-03-05 10:00:00,10.00,paid\n"
    path = write(tmp_path, body)

    report = orders_import(path=path, workers=1)

    assert (report.created, report.failed) == (3000, 1)
    assert report.errors[0][0] == 3002
    assert not Member.objects.filter(name__contains="\ufffd").exists()


@pytest.mark.django_db
def test_a_megabyte_cell_is_quoted_in_the_row_error_at_most_a_few_hundred_characters(tmp_path):
    huge = "9" * (1 << 20)
    path = write(tmp_path, HEADER + f"L1,c-1,Ann,,2024-03-05 10:00:00,{huge}x,paid\n"
                                    f"L2,c-2,Bob,,{huge},10.00,paid\n"
                                    f"L3,c-3,Cy,,2024-03-05 10:00:00,10.00,{huge}\n")

    report = orders_import(path=path, workers=1)

    assert (report.rows_read, report.failed) == (3, 3)
    assert all(len(reason) < 600 for _line, _reference, reason in report.errors)
    assert all(len(reason) < 600 for reason in ImportRowError.objects.values_list("reason", flat=True))


@pytest.mark.django_db
def test_a_lone_carriage_return_inside_a_line_fails_that_line_only_and_keeps_the_line_numbers(tmp_path):
    path = write(tmp_path, HEADER + "C1,c-1,Ann,,2024-03-05 10:00:00,10.00,paid\n"
                                    "C2,c-2,Bo\rb,,2024-03-05 10:00:00,10.00,paid\n"
                                    "C3,c-3,Cy,,2024-02-30,10.00,paid\n"
                                    "C4,c-4,Di,,2024-03-05 10:00:00,10.00,paid\r\n")

    report = orders_import(path=path, workers=1)

    assert (report.rows_read, report.created, report.failed) == (4, 2, 2)
    assert [line for line, _reference, _reason in report.errors] == [3, 4]
    assert set(Order.objects.values_list("order_id", flat=True)) == {"C1", "C4"}


@pytest.mark.django_db
def test_blank_and_delimiter_only_lines_are_not_data_lines_on_either_database(tmp_path):
    path = write(tmp_path, HEADER + "E1,c-1,Ann,,2024-03-05 10:00:00,10.00,paid\n"
                                    "\n"
                                    " ,,,\u3000,,,\n"
                                    ",,,,,,\n"
                                    "   \n"
                                    "E2,c-2,Bob,,2024-02-30,10.00,paid\n")

    report = orders_import(path=path, workers=1)

    assert (report.rows_read, report.created, report.failed) == (2, 1, 1)
    assert report.errors[0][0] == 7


@pytest.mark.django_db
def test_an_unbalanced_quote_does_not_swallow_the_good_rows_after_it(tmp_path):
    path = write(tmp_path, HEADER + '"Q1,c-1,Ann,,2024-03-05 10:00:00,10.00,paid\n'
                                    "Q2,c-2,Bob,,2024-03-05 10:00:00,10.00,paid\n"
                                    "Q3,c-3,Cy,,2024-03-05 10:00:00,10.00,paid\n")

    report = orders_import(path=path, workers=1)

    assert (report.rows_read, report.created, report.failed) == (3, 2, 1)
    assert report.errors[0][0] == 2
    assert set(Order.objects.values_list("order_id", flat=True)) == {"Q2", "Q3"}


@pytest.mark.django_db
def test_stray_quotes_inside_cells_are_stored_literally_on_either_database(tmp_path):
    path = write(tmp_path, HEADER + 'S1,c-1,Ann"s "shop",,2024-03-05 10:00:00,10.00,paid\n'
                                    'S2,c-2,a""b,,2024-03-05 10:00:00,10.00,paid\n'
                                    'S3,c-3,"Cy ""the"" Lee",,2024-03-05 10:00:00,10.00,paid\n')

    report = orders_import(path=path, workers=1)

    assert (report.rows_read, report.created, report.failed) == (3, 3, 0)
    assert Member.objects.get(external_id="c-1").name == 'Ann"s "shop"'
    assert Member.objects.get(external_id="c-2").name == 'a""b'
    assert Member.objects.get(external_id="c-3").name == 'Cy "the" Lee'


@pytest.mark.django_db
def test_a_utf8_file_with_one_invalid_byte_early_on_stays_utf8_and_fails_only_that_line(tmp_path):
    path = write(tmp_path, HEADER.encode() + "U1,c-1,王芳,,2024-03-05 10:00:00,10.00,paid\n".encode()
                 + b"U2,c-2,\xe7\x8e,,2024-03-05 10:00:00,10.00,paid\n"
                 + "U3,c-3,李雷,,2024-03-05 10:00:00,10.00,paid\n".encode())

    report = orders_import(path=path, workers=1)

    assert (report.rows_read, report.created, report.failed) == (3, 2, 1)
    assert report.errors[0][0] == 3
    assert Member.objects.get(external_id="c-1").name == "王芳"
    assert Member.objects.get(external_id="c-3").name == "李雷"


@pytest.mark.django_db
def test_an_ascii_file_with_a_stray_byte_imports_its_other_lines_instead_of_being_refused_whole(tmp_path):
    path = write(tmp_path, HEADER.encode() + b"A1,c-1,Ann,,2024-03-05 10:00:00,10.00,paid\n"
                 + b"A2,c-2,Bob\xff,,2024-03-05 10:00:00,10.00,paid\n")

    report = orders_import(path=path, workers=1)

    assert (report.rows_read, report.created, report.failed) == (2, 1, 1)
    assert report.errors[0][0] == 3


@pytest.mark.django_db
def test_a_gbk_file_with_one_invalid_byte_stays_gbk_and_fails_only_that_line(tmp_path):
    path = write(tmp_path, HEADER.encode() + "K1,c-1,王芳,,2024-03-05 10:00:00,10.00,paid\n".encode("gbk")
                 + b"K2,c-2,\xff,,2024-03-05 10:00:00,10.00,paid\n"
                 + "K3,c-3,李雷,,2024-03-05 10:00:00,10.00,paid\n".encode("gbk"))

    report = orders_import(path=path, workers=1)

    assert (report.rows_read, report.created, report.failed) == (3, 2, 1)
    assert Member.objects.get(external_id="c-3").name == "李雷"


@pytest.mark.django_db
def test_a_header_line_longer_than_the_sample_is_refused_with_a_short_message(tmp_path):
    path = write(tmp_path, "x" * (1 << 20) + ",amount\nA1,10.00\n")

    with pytest.raises(ImportFileError) as refused:
        orders_import(path=path, workers=1)

    assert len(str(refused.value)) < 600


@pytest.mark.django_db
def test_long_unknown_headers_are_named_in_the_file_error_at_most_a_few_hundred_characters(tmp_path):
    path = write(tmp_path, ",".join(f"column {n} " + "y" * 500 for n in range(100)) + "\nA1,10.00\n")

    with pytest.raises(ImportFileError) as refused:
        orders_import(path=path, workers=1)

    assert "No column for" in str(refused.value) and len(str(refused.value)) < 600


@pytest.mark.django_db
@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_an_encoding_whose_line_ends_are_not_single_bytes_is_refused_whole(tmp_path, encoding):
    path = write(tmp_path, (HEADER + "W1,c-1,Ann,,2024-03-05 10:00:00,10.00,paid\n").encode(encoding))

    with pytest.raises(ImportFileError, match=encoding):
        orders_import(path=path, encoding=encoding, workers=1)

    assert not Order.objects.exists()


@pytest.mark.django_db
def test_a_stray_quote_does_not_make_the_rest_of_the_file_one_block_and_every_good_row_still_imports(tmp_path):
    lines = good_rows(2000)
    lines.insert(1, '"X')  # line 3: opens a quote no line closes
    path = write(tmp_path, HEADER + "\n".join(lines) + "\n")

    blocks = list(read_blocks(path, inspect_file(path), block_bytes=4096))
    report = orders_import(path=path, workers=1, block_bytes=4096)

    assert max(len(block) for _line, _end, block in blocks) <= 3 * 4096
    assert (report.rows_read, report.created, report.failed) == (2001, 2000, 1)
    assert report.errors[0][0] == 3
