"""CSV parsing (dust-behaviour.md §4.2; the vectors are Dust's own tests in ``core/src/databases/csv.rs``)."""

from __future__ import annotations

import pytest

from alexandria.domain.tables import TableRow
from alexandria.tables import csv as tcsv
from alexandria.tables.csv import find_delimiter, guess_cell, parse_csv, sanitize_headers, slugify
from alexandria.tables.errors import InvalidCsv
from alexandria.tables.schema import from_rows


def test_delimiter_detection() -> None:
    assert find_delimiter("a,b,c\n1,2,3\n4,5,6") == ","
    assert find_delimiter("a;b;c\n1;2;3\n4;5;6") == ";"
    assert find_delimiter("a\tb\tc\n1\t2\t3") == "\t"
    assert find_delimiter("URL,Example\nFOO,swap\tblocked\tstyle-src-elem\ttheme.js:2\nBAR,acme") == ","
    assert find_delimiter('"a;b;c;d",x\n"1;2;3",y') == ","  # quoted delimiters do not count
    assert find_delimiter("single") == ","  # no candidate: the first
    assert find_delimiter("a;b,c") == ","  # a tie goes to the earlier candidate


def test_sanitize_headers_like_dust() -> None:
    headers = [
        "helloWorld", "b,.,2Fkls", "Æúű---cool?", "___", "a", "c_____d__", "___", "__dust_id", "a", "", "a",
        "Тип задачи", "Примечания", "", "重要度", "入出荷数量(+ or -) の COU", "旧_Offered price per video(2024.7)",
        "🦄 IG User ID",
    ]  # fmt: skip
    assert sanitize_headers(headers) == [
        "helloworld", "b_2fkls", "_uu_cool_", "_", "a", "c_d_", "_2", "__dust_id", "a_2", "col_9", "a_3", "_3",
        "_4", "col_13", "_5", "_or_cou", "_offered_price_per_video_2024_7_", "_ig_user_id",
    ]  # fmt: skip


def test_slugify() -> None:
    assert slugify("col1") == "col_1"  # a lowercase letter followed by a digit
    assert slugify("camelCase") == "camel_case"  # (headers are lowercased first, so only digits split there)
    assert slugify("  Total Amount (€) ") == "total_amount_"
    assert slugify("Crème brûlée") == "creme_brulee"


def test_rows_values_and_dates() -> None:
    rows = parse_csv(
        "hellWorld,super-fast,c/foo,DATE\n"
        "1,2.23,3,2025-02-14T15:06:52.380Z\n"
        '4,hello world,6,"Fri, 14 Feb 2025 15:10:34 GMT"'
    )
    assert rows == [
        TableRow(
            "0",
            {
                "hellworld": 1,
                "super_fast": 2.23,
                "c_foo": 3,
                "date": {"type": "datetime", "epoch": 1739545612380, "string_value": "2025-02-14T15:06:52.380Z"},
            },
        ),
        TableRow(
            "1",
            {
                "hellworld": 4,
                "super_fast": "hello world",
                "c_foo": 6,
                "date": {"type": "datetime", "epoch": 1739545834000, "string_value": "Fri, 14 Feb 2025 15:10:34 GMT"},
            },
        ),
    ]


def test_dust_id_column_gives_row_ids_and_is_not_a_value() -> None:
    rows = parse_csv(
        "hellWorld,super-fast,__dust_id,c/foo,DATE\n1,2.23,foo0,3,2025-02-14T15:06:52.380Z\n4,x, foo1 ,6,\n"
    )
    assert [r.row_id for r in rows] == ["foo0", "foo1"]
    assert list(rows[0].value) == ["hellworld", "super_fast", "c_foo", "date"]
    assert rows[1].value["date"] is None


def test_type_guessing_end_to_end() -> None:
    rows = parse_csv(
        "string,int,float,bool,date\n"
        "foo,123,0.231,true,2025-02-14T15:06:52.380Z\n"
        ",,,,\n"
        " , , , , \n"
        " , , ,TRUE , \n"
        " , , ,FALSE, \n"
        " , , ,t , \n"
        'bar,0,23123.0,false,"Fri, 14 Feb 2025 15:10:34 GMT"'
    )
    assert [(c.name, c.value_type) for c in from_rows(r.value for r in rows)] == [
        ("string", "text"),
        ("int", "int"),
        ("float", "float"),
        ("bool", "bool"),
        ("date", "datetime"),
    ]
    assert [r.value["bool"] for r in rows] == [True, None, None, True, False, True, False]


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("42", 42),
        ("-7", -7),
        ("+3", 3),
        ("1.5", 1.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("99999999999999999999", 1e20),
        ("inf", "inf"),
        ("NaN", "NaN"),
        ("True", True),
        ("T", True),
        ("false", False),
        ("f", "f"),
        ("yes", "yes"),
        ("  padded  ", "padded"),
        ("", None),
        ("   ", None),
        ("2024-01-02", "2024-01-02"),  # a date without a time is not RFC 3339
        ("2024-13-02T00:00:00Z", "2024-13-02T00:00:00Z"),
    ],
)
def test_guess_cell(cell: str, expected: object) -> None:
    assert guess_cell(cell) == expected


def test_rfc3339_offsets_and_rfc2822() -> None:
    assert guess_cell("2024-01-02T03:04:05+02:00") == {
        "type": "datetime",
        "epoch": 1704157445000,
        "string_value": "2024-01-02T03:04:05+02:00",
    }
    assert guess_cell("2024-01-02 01:04:05.123456789z") == {
        "type": "datetime",
        "epoch": 1704157445123,
        "string_value": "2024-01-02 01:04:05.123456789z",
    }
    assert guess_cell("2 Jan 2024 01:04:05 +0000") == {
        "type": "datetime",
        "epoch": 1704157445000,
        "string_value": "2 Jan 2024 01:04:05 +0000",
    }


def test_quoting_semicolons_bom_and_blank_lines() -> None:
    rows = parse_csv('\ufeffName;Note\n"Doe; John";"line\nbreak"\n\nAda;"say ""hi"""\n')
    assert rows == [
        TableRow("0", {"name": "Doe; John", "note": "line\nbreak"}),
        TableRow("1", {"name": "Ada", "note": 'say "hi"'}),
    ]
    tab = parse_csv("a\tb\r\n1\t2\r\n")
    assert tab == [TableRow("0", {"a": 1, "b": 2})]


def test_header_only_gives_no_rows() -> None:
    assert parse_csv("header1,header2") == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "No columns"),
        ("\n\n", "No columns"),
        (",".join(f"h{i}" for i in range(1000)), "Too many columns"),
        ("a,b\n1,2\n3\n", "Row 1 .* has 1 fields but the header has 2"),
        ("a,b\n1,2,3\n", "Row 0 .* has 3 fields but the header has 2"),
        ("x" * 1025 + "\n1", "Column name exceeds maximum length"),
    ],
)
def test_invalid_csv(content: str, message: str) -> None:
    with pytest.raises(InvalidCsv, match=message):
        parse_csv(content)


def test_exactly_512_columns_and_1024_character_names_are_fine() -> None:
    assert len(parse_csv(",".join(f"h{i}" for i in range(512)) + "\n" + ",".join("1" * 512))[0].value) == 512
    assert list(parse_csv("x" * 1024 + "\n1")[0].value) == ["x" * 1024]


def test_row_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tcsv, "MAX_TABLE_ROWS", 3)
    assert len(parse_csv("a\n1\n2\n3\n")) == 3
    with pytest.raises(InvalidCsv, match="Too many rows"):
        parse_csv("a\n1\n2\n3\n4\n")


def test_large_cells_are_accepted() -> None:
    big = "y" * 300_000
    assert parse_csv(f"a\n{big}\n")[0].value["a"] == big
