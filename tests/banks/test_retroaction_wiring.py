"""New bank content is replayed against recent lookups (retroaction) after it commits, by every write path."""

import io
import random
import threading

import pytest

from banks.changes import bank_changes_publish
from banks.importing import signals_import
from banks.models import BankContent
from banks.services import bank_content_bulk_sync, bank_content_create, bank_create
from reviews.services import review_record
from reviews.tasks import retroaction_task

pytestmark = pytest.mark.django_db

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
PDQ2 = "0" * 63 + "1"
PDQ3 = "ab" * 32


def enqueued(callbacks: list) -> list:
    """On-commit callbacks other than the matchers' wake-up, which every bank write adds."""
    return [c for c in callbacks if c is not bank_changes_publish]


@pytest.fixture
def window(settings):
    settings.OMM_RETROACTION_WINDOW_HOURS = 24
    settings.OMM_RETROACTION_DELAY_SECONDS = 30
    return settings


@pytest.fixture
def off(settings):
    settings.OMM_RETROACTION_WINDOW_HOURS = 0
    return settings


@pytest.fixture
def sent(monkeypatch) -> list[list[int]]:
    """The content ids of every retroaction task sent (instead of reaching the broker)."""
    calls: list[list[int]] = []
    lock = threading.Lock()

    def apply_async(args, countdown=None, **kwargs):
        assert countdown == 30
        with lock:
            calls.append(list(args[0]))

    monkeypatch.setattr(retroaction_task, "apply_async", apply_async)
    return calls


def _flat(calls: list[list[int]]) -> list[int]:
    return sorted(cid for call in calls for cid in call)


# --- bank_content_create --------------------------------------------------------------------------


def test_content_create_enqueues_retroaction_after_commit(window, sent, django_capture_on_commit_callbacks):
    bank = bank_create(name="BANK")
    with django_capture_on_commit_callbacks() as callbacks:
        content = bank_content_create(bank=bank, signals={"pdq": PDQ})
        assert sent == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert sent == [[content.pk]]


def test_content_create_enqueues_nothing_when_retroaction_is_off(off, django_capture_on_commit_callbacks):
    bank = bank_create(name="BANK")
    with django_capture_on_commit_callbacks() as callbacks:
        bank_content_create(bank=bank, signals={"pdq": PDQ})
    assert enqueued(callbacks) == []


def test_content_create_costs_no_query_for_retroaction_when_off(off, django_assert_max_num_queries):
    # given the queries of a create that skips retroaction outright
    bank = bank_create(name="BANK")
    with django_assert_max_num_queries(10) as skipped:
        bank_content_create(bank=bank, signals={"pdq": PDQ}, retroaction=False)
    # when retroaction is merely off
    with django_assert_max_num_queries(10) as off_queries:
        bank_content_create(bank=bank, signals={"pdq": PDQ2})
    # then it costs no query either
    assert len(off_queries.captured_queries) == len(skipped.captured_queries)


def test_review_adding_contents_enqueues_them_once_together(window, sent, django_capture_on_commit_callbacks):
    source = bank_create(name="SRC")
    first = bank_content_create(bank=source, signals={"pdq": PDQ}, retroaction=False)
    second = bank_content_create(bank=source, signals={"pdq": PDQ2}, retroaction=False)
    bank_create(name="LIST")
    with django_capture_on_commit_callbacks(execute=True):
        reviews = review_record(content_ids=[first.pk, second.pk], verdict="true_positive", add_to_bank="LIST")
    assert sent == [sorted(r.added_content_id for r in reviews)]


# --- bank_content_bulk_sync (exchange fetches) ------------------------------------------------------


def test_bulk_sync_enqueues_the_created_contents_only(window, sent, django_capture_on_commit_callbacks):
    bank = bank_create(name="SYNCED")
    kept = bank_content_create(bank=bank, signals={"pdq": PDQ}, retroaction=False)
    doomed = bank_content_create(bank=bank, signals={"pdq": PDQ2}, retroaction=False)
    with django_capture_on_commit_callbacks(execute=True):
        created = bank_content_bulk_sync(
            bank=bank,
            create=[{"pdq": PDQ3}, {"video_md5": "d41d8cd98f00b204e9800998ecf8427e"}],
            update={kept.pk: {"pdq": PDQ3}},
            delete=[doomed.pk],
        )
    assert len(created) == 2
    assert sent == [sorted(created)]


def test_bulk_sync_without_new_content_enqueues_nothing(window, sent, django_capture_on_commit_callbacks):
    bank = bank_create(name="SYNCED")
    content = bank_content_create(bank=bank, signals={"pdq": PDQ}, retroaction=False)
    with django_capture_on_commit_callbacks() as callbacks:
        bank_content_bulk_sync(bank=bank, update={content.pk: {"pdq": PDQ2}})
    assert enqueued(callbacks) == []


def test_bulk_sync_enqueues_nothing_when_off(off, django_capture_on_commit_callbacks):
    bank = bank_create(name="SYNCED")
    with django_capture_on_commit_callbacks() as callbacks:
        bank_content_bulk_sync(bank=bank, create=[{"pdq": PDQ}])
    assert enqueued(callbacks) == []


def test_exchange_fetch_enqueues_what_it_added(window, sent, tmp_path, django_capture_on_commit_callbacks):
    from exchanges import services

    path = tmp_path / "list.txt"
    path.write_text(f"pdq {PDQ}\npdq {PDQ2}\n")
    exchange = services.exchange_create(
        name="FILE", api="local_file", api_json={"filename": str(path)}, fetch_now=False
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert services.exchange_fetch(exchange_id=exchange.pk).result == "done"
    assert _flat(sent) == sorted(BankContent.objects.filter(bank=exchange.bank).values_list("pk", flat=True))
    assert len(_flat(sent)) == 2
    # a re-read that adds nothing enqueues nothing
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.exchange_fetch(exchange_id=exchange.pk, force=True)
    assert sent == []


# --- Bulk import ------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_copy", [True, False], ids=["copy", "orm"])
def test_import_enqueues_each_batch_of_new_contents(window, sent, django_capture_on_commit_callbacks, use_copy):
    bank = bank_create(name="IMPORTED")
    text = f"pdq\n{PDQ}\n{PDQ2}\n{PDQ}\n{PDQ3}\n"
    with django_capture_on_commit_callbacks(execute=True):
        report = signals_import(bank_name="IMPORTED", lines=io.StringIO(text), batch_size=2, use_copy=use_copy)
    assert report.imported == 3
    assert _flat(sent) == sorted(BankContent.objects.filter(bank=bank).values_list("pk", flat=True))
    # re-importing the same file adds nothing, so replays nothing
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        signals_import(bank_name="IMPORTED", lines=io.StringIO(text), use_copy=use_copy)
    assert sent == []


@pytest.mark.parametrize("use_copy", [True, False], ids=["copy", "orm"])
def test_import_collects_no_ids_and_enqueues_nothing_when_off(
    off, django_capture_on_commit_callbacks, django_assert_max_num_queries, use_copy
):
    bank_create(name="IMPORTED")
    with django_capture_on_commit_callbacks() as callbacks:
        with django_assert_max_num_queries(100) as queries:
            signals_import(bank_name="IMPORTED", lines=io.StringIO(f"pdq\n{PDQ}\n{PDQ2}\n"), use_copy=use_copy)
    assert enqueued(callbacks) == []
    assert not any("array_agg" in q["sql"] for q in queries.captured_queries)


def test_import_collects_ids_in_the_insert_itself_when_on(window, sent, django_assert_max_num_queries):
    bank_create(name="IMPORTED")
    with django_assert_max_num_queries(100) as queries:
        signals_import(bank_name="IMPORTED", lines=io.StringIO(f"pdq\n{PDQ}\n"), use_copy=True)
    assert sum("array_agg" in q["sql"] for q in queries.captured_queries) == 1


def test_refused_strict_import_enqueues_nothing(window, django_capture_on_commit_callbacks):
    from banks.importing import ImportRefused

    bank_create(name="STRICT")
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(ImportRefused):
        signals_import(bank_name="STRICT", lines=io.StringIO(f"pdq\n{PDQ}\nbad\n"), strict=True, batch_size=1)
    assert enqueued(callbacks) == []


@pytest.mark.django_db(transaction=True)
def test_parallel_import_enqueues_every_new_content_once(window, sent):
    # Writer threads commit on their own connections: their callbacks run for real (sent is patched).
    bank = bank_create(name="PARALLEL")
    values = [f"{random.getrandbits(256):064x}" for _ in range(200)]
    text = "pdq\n" + "".join(f"{v}\n" for v in values + values[:20])
    report = signals_import(bank_name="PARALLEL", lines=io.StringIO(text), batch_size=30, workers=3)
    assert report.imported == 200
    assert _flat(sent) == sorted(BankContent.objects.filter(bank=bank).values_list("pk", flat=True))
