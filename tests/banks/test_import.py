"""Bulk signal import (manage.py import_signals): formats, bad lines, --strict, re-runs, both write paths."""

import io
import json
import random
import sys
import threading

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal

from banks import importing
from banks.importing import (
    ImportRefused,
    ImportReport,
    SignalValidator,
    import_rows_parse,
    import_rows_write_copy,
    import_rows_write_orm,
    parsing,
    signals_import,
)
from banks.models import Bank, BankChange, BankContent, ContentSignal
from banks.services import bank_content_create, bank_create, bulk
from matching.runtime import changed_content_ids
from omm_project.lib import pytx
from omm_project.lib.errors import InvalidInput

pytestmark = pytest.mark.django_db

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
PDQ2 = "0" * 63 + "1"
PDQ3 = "ab" * 32
MD5 = "d41d8cd98f00b204e9800998ecf8427e"


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_signals", *args, "--no-progress", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def write(tmp_path, name: str, text: str | bytes):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def changed_contents(bank: Bank, after: int = 0) -> list[int]:
    """Content ids of the bank that its change rows (above id `after`) name, as matchers read them."""
    changes = BankChange.objects.filter(bank_id=bank.pk, id__gt=after).values_list(
        "id", "bank_id", "content_id", "content_id_last"
    )
    return sorted(changed_content_ids(changes))


def last_change_id() -> int:
    return BankChange.objects.order_by("-id").values_list("id", flat=True).first() or 0


def signals_of(bank: Bank) -> dict[str, BankContent]:
    """{signal_value: content} of a bank (one signal per content, as imports write them)."""
    return {
        s.signal_value: s.content
        for s in ContentSignal.objects.filter(content__bank=bank).select_related("content")
    }


# --- Formats -----------------------------------------------------------------------------------


def test_import_csv_writes_contents_signals_and_changes(tmp_path):
    # given
    bank = bank_create(name="IMPORTED")
    path = write(
        tmp_path,
        "signals.csv",
        "signal_type,signal_value,content_id,labels,metadata,note\n"
        f'pdq,{PDQ},post-1,"spam; scam, x","{{""k"": 1}}",first\n'
        f"video_md5, {MD5.upper()} ,post-2,,,\n",
    )
    changes_before = last_change_id()

    # when
    out, err = run("IMPORTED", path)

    # then
    assert "2 row(s) read (csv), 2 imported, 0 skipped as duplicates, 0 bad line(s)" in out
    assert err == ""
    contents = signals_of(bank)
    assert set(contents) == {PDQ, MD5}
    first = contents[PDQ]
    assert (first.platform_content_id, first.labels, first.metadata, first.note) == (
        "post-1",
        ["spam", "scam", "x"],
        {"k": 1},
        "first",
    )
    assert first.disable_until_ts == BankContent.ENABLED
    assert (first.original_media_uri, first.content_uri) == ("", "")
    assert first.created_at is not None and first.updated_at == first.created_at
    second = contents[MD5]
    assert (second.labels, second.metadata, second.note) == ([], None, "")
    assert ContentSignal.objects.get(content=second).signal_type == "video_md5"
    # one change row for the batch, naming the range of its content ids
    new_changes = list(BankChange.objects.filter(id__gt=changes_before))
    assert [(c.bank_id, c.content_id, c.content_id_last) for c in new_changes] == [
        (bank.pk, min(c.pk for c in contents.values()), max(c.pk for c in contents.values()))
    ]
    assert changed_contents(bank, changes_before) == sorted(c.pk for c in contents.values())


def test_import_tsv_with_a_column_named_after_the_signal_type(tmp_path):
    bank = bank_create(name="TSV")
    path = write(
        tmp_path, "signals.tsv", f'pdq\tcontent_id\tmetadata\n{PDQ}\tp1\t{{"a": "b"}}\n{PDQ2}\tp2\t\n'
    )

    out, _ = run("TSV", path)

    assert "2 imported" in out
    contents = signals_of(bank)
    assert contents[PDQ].metadata == {"a": "b"}
    assert contents[PDQ2].platform_content_id == "p2"


def test_import_jsonl_with_lists_objects_and_signal_type_keys(tmp_path):
    bank = bank_create(name="JSONL")
    lines = [
        {
            "signal_type": "pdq",
            "signal_value": PDQ,
            "content_id": "c1",
            "labels": ["a", "b"],
            "metadata": {"x": [1]},
        },
        {"video_md5": MD5, "content_id": 42, "note": "n"},
        {},
    ]
    path = write(tmp_path, "signals.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")

    out, err = run("JSONL", path)

    assert "3 row(s) read (jsonl), 2 imported" in out
    assert "line 3: expected signal_type and signal_value, or exactly one signal-type key" in err
    contents = signals_of(bank)
    assert (contents[PDQ].labels, contents[PDQ].metadata) == (["a", "b"], {"x": [1]})
    assert (contents[MD5].platform_content_id, contents[MD5].note) == ("42", "n")


def test_import_from_stdin_sniffs_the_format(monkeypatch):
    bank = bank_create(name="STDIN")
    data = f'{{"pdq": "{PDQ}"}}\n{{"pdq": "{PDQ2}"}}\n'.encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))

    out, _ = run("STDIN", "-")

    assert "(jsonl), 2 imported" in out
    assert set(signals_of(bank)) == {PDQ, PDQ2}


@pytest.mark.parametrize(
    ("first_line", "fmt"),
    [('{"pdq": "x"}', "jsonl"), ("pdq\tcontent_id", "tsv"), ("pdq,content_id", "csv"), ("pdq", "csv")],
)
def test_format_is_sniffed_without_an_extension(first_line, fmt):
    assert importing.import_format_detect(path="signals.txt", first_line=first_line) == fmt
    assert importing.import_format_detect(path="-", first_line=first_line) == fmt


def test_format_option_overrides_the_extension(tmp_path):
    bank = bank_create(name="FMT")
    path = write(tmp_path, "signals.csv", f"pdq\tnote\n{PDQ}\thello, world\n")

    out, _ = run("FMT", path, "--format", "tsv")

    assert "(tsv), 1 imported" in out
    assert signals_of(bank)[PDQ].note == "hello, world"


# --- Bad lines ---------------------------------------------------------------------------------


def test_bad_lines_are_reported_with_line_numbers_and_skipped(tmp_path):
    bank = bank_create(name="BAD")
    path = write(
        tmp_path,
        "signals.csv",
        "signal_type,signal_value,content_id,metadata,note\n"  # line 1
        f"pdq,{PDQ},ok-1,,\n"  # 2
        f"pdq,{PDQ.upper()},,,\n"  # 3: PDQ must be lowercase
        "nope,abc,,,\n"  # 4
        "\n"  # 5: blank, not a row
        f'pdq,{PDQ2},,"[1]",\n'  # 6
        f'pdq,{PDQ2},,"{{""a"": NaN}}",\n'  # 7
        f"pdq,{PDQ2},,,{'x' * 256}\n"  # 8
        f"pdq,{PDQ2},,\n"  # 9: a field short
        f'pdq,{PDQ3},"multi\nline",,\n'  # 10-11: fine
        f"pdq,{PDQ3},{'c' * 513},,\n"  # 12
        f'pdq,{PDQ3},"x"y,,\n'  # 13: bad quoting
        f"video_md5,{MD5},ok-2,,\n",  # 14
    )

    out, err = run("BAD", path)

    assert "11 row(s) read (csv), 3 imported, 0 skipped as duplicates, 8 bad line(s) skipped" in out
    reported = [line.split(":", 1)[0] for line in err.splitlines()]
    assert reported == [f"line {n}" for n in (3, 4, 6, 7, 8, 9, 12, 13)]
    assert "line 3: Invalid pdq signal" in err
    assert "line 4: No such signal type 'nope'" in err
    assert "line 6: metadata must be a JSON object" in err
    assert "line 7: metadata" in err
    assert "line 8: note must be at most 255 characters" in err
    assert "line 9: expected 5 fields, got 4" in err
    assert "line 12: content_id must be at most 512 characters" in err
    assert "line 13: unreadable CSV" in err
    assert set(signals_of(bank)) == {PDQ, PDQ3, MD5}
    assert signals_of(bank)[PDQ3].platform_content_id == "multi\nline"


def test_nul_and_undecodable_bytes_are_bad_lines(tmp_path):
    bank = bank_create(name="BYTES")
    data = (
        b"pdq,content_id,note\n"
        + f"{PDQ},a\x00b,\n".encode()
        + f"{PDQ2},café,\n".encode()  # valid UTF-8
        + f"{PDQ3},".encode()
        + b"\xff\xfe,\n"
    )
    path = write(tmp_path, "signals.csv", data)

    out, err = run("BYTES", path)

    assert "3 row(s) read (csv), 1 imported" in out
    assert "line 2: content_id contains a NUL character" in err
    assert "line 4: content_id is not valid UTF-8" in err
    assert signals_of(bank)[PDQ2].platform_content_id == "café"


def test_only_the_first_20_bad_lines_are_printed(tmp_path):
    bank_create(name="MANY")
    path = write(tmp_path, "signals.csv", "pdq\n" + "bad\n" * 25 + f"{PDQ}\n")

    out, err = run("MANY", path)

    assert "1 imported" in out and "25 bad line(s)" in out
    assert err.count("Invalid pdq signal") == 20
    assert "line 2:" in err and "line 21:" in err and "line 22:" not in err
    assert "... and 5 more bad line(s)" in err


def test_strict_refuses_everything_when_a_line_is_bad(tmp_path):
    bank = bank_create(name="STRICT")
    changes_before = BankChange.objects.count()
    path = write(tmp_path, "signals.csv", f"pdq\n{PDQ}\n{PDQ2}\nbad\n{PDQ3}\n")

    with pytest.raises(CommandError, match=r"Import refused: 1 bad line\(s\); nothing was imported"):
        run("STRICT", path, "--strict", "--batch-size", "1")

    assert not BankContent.objects.filter(bank=bank).exists()
    assert BankChange.objects.count() == changes_before


def test_strict_refusal_reports_every_bad_line():
    bank_create(name="STRICT")
    good, short = [f"{i:064x}" for i in range(10)], [f"{i:063x}" for i in range(3)]
    text = "pdq\n" + "".join(f"{v}\n" for v in [*good, "bad", *short])

    with pytest.raises(ImportRefused) as excinfo:
        signals_import(bank_name="STRICT", lines=io.StringIO(text), strict=True, batch_size=4)

    report = excinfo.value.report
    assert (report.rows_read, report.bad_lines, report.imported) == (14, 4, 0)
    assert [bad.line for bad in report.first_bad_lines] == [12, 13, 14, 15]
    assert not BankContent.objects.exists()


def test_strict_refusal_does_not_create_the_bank(tmp_path):
    path = write(tmp_path, "signals.csv", f"pdq\n{PDQ}\nbad\n")

    with pytest.raises(CommandError, match="Import refused"):
        run("NEW_BANK", path, "--strict", "--create-bank")

    assert not Bank.objects.filter(name="NEW_BANK").exists()
    assert not BankChange.objects.exists()


def test_strict_imports_a_clean_file(tmp_path):
    bank = bank_create(name="CLEAN")
    path = write(tmp_path, "signals.csv", f"pdq\n{PDQ}\n{PDQ2}\n")

    out, _ = run("CLEAN", path, "--strict", "--batch-size", "1")

    assert "2 imported" in out
    assert BankContent.objects.filter(bank=bank).count() == 2


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("signal_type,signal_value,colour", "unknown column(s) ['colour']"),
        ("signal_type,content_id", "the header needs either"),
        ("pdq,video_md5", "exactly one column named after a signal type"),
        ("pdq,signal_value", "the header needs either"),
        ("pdq,note,note", "repeated column(s) ['note']"),
        ("pdq,content_id,platform_content_id", "repeated column(s)"),
    ],
)
def test_unusable_header_fails_and_writes_nothing(tmp_path, header, message):
    path = write(tmp_path, "signals.csv", f"{header}\n{PDQ},x\n")

    with pytest.raises(CommandError, match="line 1: ") as excinfo:
        run("HEADER", path, "--create-bank")

    assert message in str(excinfo.value)
    assert not Bank.objects.filter(name="HEADER").exists()


# --- Banks -------------------------------------------------------------------------------------


def test_unknown_bank_is_an_error(tmp_path):
    path = write(tmp_path, "signals.csv", f"pdq\n{PDQ}\n")

    with pytest.raises(CommandError, match="bank 'NOPE' not found .*--create-bank"):
        run("NOPE", path)

    assert not Bank.objects.exists()


def test_create_bank_creates_it_once(tmp_path):
    path = write(tmp_path, "signals.csv", f"pdq\n{PDQ}\n")

    out, _ = run("FRESH", path, "--create-bank")
    again, _ = run("FRESH", path, "--create-bank")

    assert out.startswith("FRESH (created): ")
    assert again.startswith("FRESH: ")
    bank = Bank.objects.get(name="FRESH")
    assert BankChange.objects.filter(bank_id=bank.pk, content_id=None).count() == 1


def test_bad_bank_name_with_create_bank_is_an_error(tmp_path):
    path = write(tmp_path, "signals.csv", f"pdq\n{PDQ}\n")

    with pytest.raises(CommandError, match="UPPER_WITH_UNDERSCORE"):
        run("lower", path, "--create-bank")


def test_missing_file_is_an_error():
    with pytest.raises(CommandError, match="Cannot read /no/such/file.csv"):
        run("ANY", "/no/such/file.csv")


# --- Idempotency -------------------------------------------------------------------------------


def test_rerunning_the_same_file_adds_nothing(tmp_path):
    bank = bank_create(name="AGAIN")
    path = write(tmp_path, "signals.csv", f"pdq,content_id\n{PDQ},a\n{PDQ2},b\n{MD5},c\n")

    run("AGAIN", path)
    contents, changes = BankContent.objects.count(), BankChange.objects.count()
    out, err = run("AGAIN", path)

    assert "3 row(s) read (csv), 2 imported" not in out
    assert "0 imported, 2 skipped as duplicates, 1 bad line(s)" in out
    assert "line 4: Invalid pdq signal" in err
    assert (BankContent.objects.count(), BankChange.objects.count()) == (contents, changes)
    assert set(signals_of(bank)) == {PDQ, PDQ2}


def test_repeats_within_a_file_are_imported_once_and_the_first_wins(tmp_path):
    bank = bank_create(name="REPEAT")
    path = write(
        tmp_path,
        "signals.csv",
        f"pdq,content_id,note\n{PDQ},a,first\n{PDQ2},a,other\n{PDQ},a,second\n{PDQ},b,another content\n",
    )

    out, _ = run("REPEAT", path, "--batch-size", "2")

    assert "4 row(s) read (csv), 3 imported, 1 skipped as duplicates" in out
    rows = ContentSignal.objects.filter(content__bank=bank, signal_value=PDQ).values_list(
        "content__platform_content_id", "content__note"
    )
    assert sorted(rows) == [("a", "first"), ("b", "another content")]


def test_the_same_file_imports_into_two_banks(tmp_path):
    one, two = bank_create(name="ONE"), bank_create(name="TWO")
    path = write(tmp_path, "signals.csv", f"pdq\n{PDQ}\n")

    run("ONE", path)
    run("TWO", path)

    assert set(signals_of(one)) == set(signals_of(two)) == {PDQ}


def test_content_added_through_the_api_is_deduplicated_against(tmp_path):
    # the same signal with the same content id is the same row, however it arrived
    bank = bank_create(name="MIXED")
    bank_content_create(bank=bank, signals={"pdq": PDQ}, platform_content_id="post-1")
    path = write(tmp_path, "signals.csv", f"pdq,content_id\n{PDQ},post-1\n{PDQ},post-2\n")

    out, _ = run("MIXED", path)

    assert "1 imported, 1 skipped as duplicates" in out
    rows = ContentSignal.objects.filter(content__bank=bank, signal_value=PDQ).values_list(
        "content__platform_content_id", flat=True
    )
    assert sorted(rows) == ["post-1", "post-2"]


def test_only_the_same_signal_type_bank_and_content_id_is_a_duplicate():
    rows = parsed(
        "signal_type,signal_value,content_id\n"
        f"pdq,{PDQ},a\n"  # held: a duplicate
        f"pdq,{PDQ},\n"  # another content id
        f"pdq,{PDQ2},b\n"  # held by another bank only
        f"video_md5,{PDQ[:32]},a\n"  # another signal type
    )
    other = bank_create(name="OTHER")
    import_rows_write_copy(bank_id=other.pk, rows=parsed(f"pdq,content_id\n{PDQ2},b\n"))
    for write_rows in (import_rows_write_copy, import_rows_write_orm):
        # given a bank holding PDQ with content id "a"
        bank = bank_create(name=f"HOLDS_{write_rows.__name__.upper()}")
        write_rows(bank_id=bank.pk, rows=parsed(f"pdq,content_id\n{PDQ},a\n"))

        # when the rows are written twice
        first, second = write_rows(bank_id=bank.pk, rows=rows), write_rows(bank_id=bank.pk, rows=rows)

        # then only the held row is skipped, and the second time every row
        assert (first, second) == ((4, 3), (4, 0)), write_rows
        assert ContentSignal.objects.filter(content__bank=bank).count() == 4


def test_an_interrupted_import_completes_on_rerun_without_duplicates(tmp_path, monkeypatch):
    # given an import that fails in its third batch (batches of 2 rows)
    bank = bank_create(name="CRASH")
    values = [f"{i:064x}" for i in range(7)]
    path = write(tmp_path, "signals.csv", "pdq\n" + "".join(f"{v}\n" for v in values))
    real_write = bulk.rows_write_copy
    calls = []

    def failing_write(**kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("database went away")
        return real_write(**kwargs)

    monkeypatch.setattr(bulk, "rows_write_copy", failing_write)
    with pytest.raises(RuntimeError):
        run("CRASH", path, "--batch-size", "2")

    # then the first two batches stay
    assert len(signals_of(bank)) == 4

    # when the same file is imported again
    monkeypatch.setattr(bulk, "rows_write_copy", real_write)
    out, _ = run("CRASH", path, "--batch-size", "2")

    # then the rest is added, once
    assert "7 row(s) read (csv), 3 imported, 4 skipped as duplicates" in out
    assert sorted(signals_of(bank)) == values
    assert changed_contents(bank) == sorted(c.pk for c in signals_of(bank).values())


# --- Both write paths --------------------------------------------------------------------------


def parsed(text: str, fmt: str = "csv") -> list[importing.ImportRow]:
    report = ImportReport(bank="X")
    rows = list(import_rows_parse(io.StringIO(text), fmt=fmt, report=report))
    assert report.bad_lines == 0
    return rows


def test_orm_fallback_writes_what_copy_writes():
    # given the same rows written by each path into its own bank
    rows = parsed(
        "signal_type,signal_value,content_id,labels,metadata,note\n"
        f'pdq,{PDQ},a,"x;y","{{""k"": null}}",n\n'
        f"video_md5,{MD5},,,,\n"
        f"pdq,{PDQ},a,,,repeat\n"
    )
    by_copy, by_orm = bank_create(name="BY_COPY"), bank_create(name="BY_ORM")

    # when
    assert import_rows_write_copy(bank_id=by_copy.pk, rows=rows) == (3, 2)
    assert import_rows_write_orm(bank_id=by_orm.pk, rows=rows) == (3, 2)

    # then
    fields = (
        "platform_content_id",
        "labels",
        "metadata",
        "note",
        "disable_until_ts",
        "original_media_uri",
        "content_uri",
    )

    def shape(bank):
        return sorted(
            (s.signal_type, s.signal_value, *(getattr(s.content, f) for f in fields))
            for s in ContentSignal.objects.filter(content__bank=bank).select_related("content")
        )

    assert shape(by_copy) == shape(by_orm)
    assert len(shape(by_orm)) == 2
    for bank in (by_copy, by_orm):
        ids = sorted(BankContent.objects.filter(bank=bank).values_list("pk", flat=True))
        assert changed_contents(bank) == ids


def test_copy_keeps_text_that_copy_formats_escape():
    # given values holding what COPY's formats escape or read as NULL: tabs, backslashes, \\N,
    # commas, quotes, line breaks (JSON lines carries them all)
    odd = ['a\tb', "back\\slash", "\\N", 'say "hi", then', "line\nbreak\r"]
    lines = [
        json.dumps({"pdq": f"{i:064x}", "content_id": text, "labels": [text], "metadata": {text: text}, "note": text})
        for i, text in enumerate(odd)
    ]
    rows = parsed("\n".join(lines) + "\n", fmt="jsonl")
    by_copy, by_orm = bank_create(name="ODD_COPY"), bank_create(name="ODD_ORM")

    # when each path writes them
    import_rows_write_copy(bank_id=by_copy.pk, rows=rows)
    import_rows_write_orm(bank_id=by_orm.pk, rows=rows)

    # then both store them as given
    for bank in (by_copy, by_orm):
        stored = sorted(
            (c.platform_content_id, c.labels, c.metadata, c.note) for c in BankContent.objects.filter(bank=bank)
        )
        assert stored == sorted((text, [text], {text: text}, text) for text in odd)


def test_orm_fallback_and_copy_agree_on_duplicates():
    bank = bank_create(name="KEYS")
    rows = parsed(f"pdq,content_id\n{PDQ},a\n{PDQ2},b\n")

    assert import_rows_write_copy(bank_id=bank.pk, rows=rows[:1]) == (1, 1)
    assert import_rows_write_orm(bank_id=bank.pk, rows=rows) == (2, 1)
    assert import_rows_write_copy(bank_id=bank.pk, rows=rows) == (2, 0)


def test_signals_import_through_the_orm_fallback(tmp_path):
    bank = bank_create(name="FALLBACK")
    lines = io.StringIO(f"pdq,note\n{PDQ},a\nbad,b\n{PDQ2},c\n{PDQ},d\n")

    report = signals_import(bank_name="FALLBACK", lines=lines, fmt="csv", use_copy=False, batch_size=2)

    assert (report.rows_read, report.imported, report.duplicates, report.bad_lines) == (4, 2, 1, 1)
    assert signals_of(bank)[PDQ].note == "a"
    again = signals_import(bank_name="FALLBACK", lines=io.StringIO(f"pdq,note\n{PDQ},a\n"), use_copy=False)
    assert (again.imported, again.duplicates) == (0, 1)


@pytest.mark.django_db(transaction=True)
def test_parallel_writers_import_every_row_once():
    # Each writer thread has its own connection, so the data must be committed: transaction=True.
    bank = bank_create(name="PARALLEL")
    values = [f"{random.getrandbits(256):064x}" for _ in range(500)]
    text = "pdq\n" + "".join(f"{v}\n" for v in values + values[:50])

    report = signals_import(bank_name="PARALLEL", lines=io.StringIO(text), batch_size=37, workers=3)
    again = signals_import(bank_name="PARALLEL", lines=io.StringIO(text), batch_size=37, workers=3)

    assert (report.rows_read, report.imported, report.duplicates) == (550, 500, 50)
    assert (again.imported, again.duplicates) == (0, 550)
    assert sorted(signals_of(bank)) == sorted(values)
    assert changed_contents(bank) == sorted(c.pk for c in signals_of(bank).values())


@pytest.mark.django_db(transaction=True)
def test_concurrent_imports_of_the_same_rows_add_them_once():
    # given one import's batch written but not committed, holding its key groups
    bank = bank_create(name="RACE")
    rows = parsed("pdq\n" + "".join(f"{i:064x}\n" for i in range(1, 40)))
    written, release = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                results["first"] = import_rows_write_copy(bank_id=bank.pk, rows=rows)
                written.set()
                release.wait(10)
        finally:
            connection.close()

    def second() -> None:
        try:
            written.wait(10)
            with transaction.atomic():
                results["second"] = import_rows_write_copy(bank_id=bank.pk, rows=rows)
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()

    # when a second import of the same rows starts meanwhile, it waits for the first to commit
    assert written.wait(10)
    threads[1].join(1.0)
    waited = threads[1].is_alive()
    release.set()
    for thread in threads:
        thread.join(20)

    # then it finds every row held
    assert waited
    assert results == {"first": (39, 39), "second": (39, 0)}
    assert len(signals_of(bank)) == 39


@pytest.mark.django_db(transaction=True)
def test_parallel_writer_failure_stops_the_import(monkeypatch):
    bank_create(name="FAILING")

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(bulk, "rows_write_copy", broken)
    text = "pdq\n" + "".join(f"{i:064x}\n" for i in range(100))
    with pytest.raises(RuntimeError, match="boom"):
        signals_import(bank_name="FAILING", lines=io.StringIO(text), batch_size=10, workers=2)
    assert not BankContent.objects.exists()


# --- Validation equals the signal types' own --------------------------------------------------


def tricky_values(length: int) -> list[str]:
    rng = random.Random(7)
    hexdigits = "0123456789abcdef"
    good = "".join(rng.choice(hexdigits) for _ in range(length))
    values = [
        good,
        good.upper(),
        good[:-1],
        good + "0",
        " " + good,
        good + " ",
        good + "\n",
        "\n" + good,
        good + "\r\n",
        "\t" + good + "\t",
        good[:-1] + "g",
        good[:-1] + "\u0660",
        good[:-1] + "\uff10",
        good[:-1] + "\x00",
        "",
        " ",
        good[: length // 2],
        good.replace("a", "A", 1),
        "0x" + good[2:],
    ]
    for _ in range(300):
        size = length + rng.choice([-1, 0, 0, 0, 1])
        chars = [rng.choice(hexdigits + "ABCDEFgx \n\t-") for _ in range(size)]
        values.append("".join(chars))
    return values


@pytest.mark.parametrize(
    ("signal_type", "length"), [(PdqSignal, 64), (VideoMD5Signal, 32)], ids=["pdq", "video_md5"]
)
def test_validation_accepts_exactly_what_the_class_accepts(signal_type, length):
    validate = SignalValidator()
    fast = parsing._FAST_VALID[signal_type]
    for value in tricky_values(length):
        # the reference is the API's rule: the class's own validator, plus no white space in a
        # hash of bytes (pytx's PDQ regex lets a trailing newline through)
        try:
            expected = pytx.signal_validate(signal_type, value)
        except InvalidInput:
            expected = None
        try:
            got = validate(signal_type.get_name(), value)
        except importing.BadLine:
            got = None
        assert got == expected, repr(value)
        if fast(value):  # the shortcut only takes values the class returns unchanged
            assert expected == value, repr(value)


def test_copy_text_of_rows_is_the_general_encoding():
    from banks.services.copy import copy_line

    rows = [
        ("k", "pdq", PDQ, "plain-id", "[]", None, ""),
        ("k", "pdq", PDQ, "a,b", "[]", None, ""),
        ("k", "pdq", PDQ, 'say "hi"', "[]", None, ""),
        ("k", "pdq", PDQ, "line\nbreak\r", "[]", None, ""),
        ("k", "pdq", PDQ, "tab\tand\\backslash", "[]", None, ""),
        ("k", "pdq", PDQ, "", '["a", "b"]', '{"x":"y,z\\n"}', "a note, quoted"),
        ("k", "video_md5", MD5, "", "[]", None, "n"),
    ]
    expected = "".join(copy_line(row[1:]) for row in rows)  # keys are not sent

    assert bulk.rows_copy_text(rows) == expected
    assert expected.splitlines()[0] == f"pdq\t{PDQ}\tplain-id\t[]\t\\N\t"


def test_signal_values_have_a_hash_index_that_exact_lookups_use():
    # A hash index on PostgreSQL (a B-tree on random 64-hex values made imports pay a random leaf
    # per signal); exact lookups by type and value must still be served by an index.
    bank = bank_create(name="HASHIDX")
    content = bank_content_create(bank=bank, signals={"pdq": PDQ})
    lookup = ContentSignal.objects.filter(signal_type="pdq", signal_value=PDQ)
    assert list(lookup.values_list("content_id", flat=True)) == [content.pk]
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", [ContentSignal._meta.db_table])
        definitions = [row[0] for row in cursor.fetchall()]
    assert [d for d in definitions if "(signal_value)" in d] == [
        f'CREATE INDEX signal_value_hash ON public.{ContentSignal._meta.db_table} USING hash (signal_value)'
    ]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
        assert "signal_value_hash" in lookup.explain()


def test_content_listing_reads_its_ascending_index_backwards():
    from banks.selectors import bank_content_list

    bank = bank_create(name="LISTIDX")
    first = bank_content_create(bank=bank, signals={"pdq": PDQ})
    second = bank_content_create(bank=bank, signals={"pdq": PDQ2})
    listing = bank_content_list(bank=bank)
    assert [c.pk for c in listing] == [second.pk, first.pk]
    if connection.vendor != "postgresql":
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
        plan = bank_content_list(bank=bank)[:10].explain()
    assert "Index Scan Backward using content_bank_updated_id" in plan, plan


def test_jsonl_bad_lines_are_reported_printably(tmp_path):
    bank_create(name="JBAD")
    data = b"\n".join(
        [
            json.dumps({"pdq": PDQ, "content_id": "a"}).encode(),
            b'{"signal_type": "p\xffdq", "signal_value": "x"}',
            b"[1, 2]",
            b"{not json",
            json.dumps({"pdq": PDQ2, "content_id": "a", "platform_content_id": "b"}).encode(),
            json.dumps({"pdq": PDQ2, "colour": "red"}).encode(),
            json.dumps({"pdq": PDQ2, "labels": "a,b"}).encode(),
            json.dumps({"pdq": PDQ2, "labels": ["ok", ""]}).encode(),
            json.dumps({"pdq": PDQ2, "content_id": True}).encode(),
            json.dumps({"pdq": 5}).encode(),
            json.dumps({"video_md5": "x" * 5000}).encode(),
        ]
    )
    path = write(tmp_path, "signals.jsonl", data)

    out, err = run("JBAD", path)

    assert "11 row(s) read (jsonl), 1 imported, 0 skipped as duplicates, 10 bad line(s)" in out
    lines = err.splitlines()
    assert lines[:9] == [
        "line 2: No such signal type 'p\\udcffdq'",
        "line 3: expected a JSON object",
        "line 4: not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        "line 5: give content_id or platform_content_id, not both",
        "line 6: unknown key(s) ['colour']",
        "line 7: labels must be a list of non-empty strings",
        "line 8: labels must be a list of non-empty strings",
        "line 9: content_id must be a string or an integer",
        "line 10: signal_value must be a string",
    ]
    assert lines[9].startswith("line 11: Invalid video_md5 signal: 'xxx")
    assert lines[9].endswith("xxx...") and len(lines[9]) == len("line 11: ") + importing.REASON_MAX_LENGTH
