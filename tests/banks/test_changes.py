"""GET /c/bank/<name>/changes: a bank's change feed, read by other omm instances (omm-to-omm sharing)."""

import time

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from banks.models import BankChange
from banks.services import bank_content_bulk_sync, bank_content_delete, bank_content_update
from tests.builders import make_bank, make_content

pytestmark = pytest.mark.django_db

PDQ_A, PDQ_B, PDQ_C = "a" * 64, "b" * 64, "c" * 64
MD5_A = "d41d8cd98f00b204e9800998ecf8427e"


@pytest.fixture(autouse=True)
def _no_gap_wait(settings):
    """Ids rolled back by earlier tests leave gaps in the shared sequence; only the gap test waits."""
    settings.OMM_MATCHER_GAP_SECONDS = 0


def feed(client, name: str = "SRC", **params):
    response = client.get(f"/c/bank/{name}/changes", params)
    assert response.status_code == 200, response.content
    return response.json()


def test_changes_lists_contents_with_their_signals_in_log_order(curator_client):
    # given a bank with two contents, and another bank's content in between
    bank = make_bank("SRC")
    first = make_content(bank, {"pdq": PDQ_A, "video_md5": MD5_A})
    make_content(make_bank("OTHER"), {"pdq": PDQ_C})
    second = make_content(bank, {"pdq": PDQ_B})
    # when the feed is read from the start
    body = feed(curator_client)
    # then both are there, in order, with their current signals, and nothing more is known
    assert body["changes"] == [
        {"id": first.pk, "state": "present", "signals": {"pdq": PDQ_A, "video_md5": MD5_A}},
        {"id": second.pk, "state": "present", "signals": {"pdq": PDQ_B}},
    ]
    assert body["has_more"] is False
    # and reading on from `next` gives nothing new
    assert feed(curator_client, after=body["next"])["changes"] == []


def test_changes_report_disabled_and_deleted_contents(curator_client):
    # given a reader that has read two contents
    bank = make_bank("SRC")
    kept, disabled, deleted = (make_content(bank, {"pdq": p}) for p in (PDQ_A, PDQ_B, PDQ_C))
    cursor = feed(curator_client)["next"]
    # when one is disabled (for a while) and one deleted
    bank_content_update(content=disabled, changes={"disable_until_ts": int(time.time()) + 3600})
    deleted_id = deleted.pk
    bank_content_delete(content=deleted)
    body = feed(curator_client, after=cursor)
    # then the next page says so, without signals; the untouched one is not repeated
    assert body["changes"] == [
        {"id": disabled.pk, "state": "disabled", "signals": {}},
        {"id": deleted_id, "state": "deleted", "signals": {}},
    ]
    assert kept.pk not in {c["id"] for c in body["changes"]}


def test_changes_page_through_a_bulk_range_and_resume_inside_it(curator_client):
    # given a bank with five contents from one bulk write (one change row naming their range)
    bank = make_bank("SRC")
    ids = bank_content_bulk_sync(bank=bank, create=[{"pdq": f"{i:x}" * 64} for i in range(10, 15)])
    assert BankChange.objects.filter(bank_id=bank.pk, content_id_last__isnull=False).count() == 1
    # when it is read two at a time
    seen, cursor, pages = [], None, 0
    while True:
        body = feed(curator_client, limit=2, **({"after": cursor} if cursor else {}))
        seen += [c["id"] for c in body["changes"]]
        cursor, pages = body["next"], pages + 1
        if not body["has_more"]:
            break
    # then every content comes once, in id order, over three pages
    assert seen == ids and pages == 3


def test_changes_skip_a_gap_until_it_is_old(curator_client, settings):
    # given a reader that has read the bank so far
    bank = make_bank("SRC")
    first = make_content(bank, {"pdq": PDQ_A})
    cursor = feed(curator_client)["next"]
    # when a change id is taken by a transaction that is not visible (here: rolled back) and a
    # later one commits
    settings.OMM_MATCHER_GAP_SECONDS = 300
    with pytest.raises(RuntimeError), transaction.atomic():
        BankChange.objects.create(bank_id=bank.pk, content_id=None)
        raise RuntimeError("rolled back")
    later = make_content(bank, {"pdq": PDQ_B})
    # then the feed waits before the missing id (it might still commit)...
    body = feed(curator_client, after=cursor)
    assert body["changes"] == [] and body["next"] == cursor
    # (also when the gap lies between two recent rows)
    first_change = BankChange.objects.filter(bank_id=bank.pk, content_id=first.pk).get().pk
    body = feed(curator_client, after=str(first_change - 1))
    assert [c["id"] for c in body["changes"]] == [first.pk] and body["next"] == str(first_change)
    # ...and passes it once it is older than the gap window
    settings.OMM_MATCHER_GAP_SECONDS = 0
    assert [c["id"] for c in feed(curator_client, after=cursor)["changes"]] == [later.pk]


@pytest.mark.parametrize(
    "params",
    [{"after": "x"}, {"after": "-1"}, {"after": "1.2.3"}, {"limit": "0"}, {"limit": "5001"}, {"limit": "a"}],
)
def test_changes_refuse_a_bad_cursor_or_limit(curator_client, params):
    make_bank("SRC")
    response = curator_client.get("/c/bank/SRC/changes", params)
    assert response.status_code == 400
    assert set(response.json()["errors"]) <= {"after", "limit"}


def test_changes_of_an_unknown_bank_are_404(curator_client):
    assert curator_client.get("/c/bank/NOPE/changes").status_code == 404


def test_changes_need_the_curate_scope(anon_client, matcher_client):
    make_bank("SRC")
    assert anon_client.get("/c/bank/SRC/changes").status_code == 401
    assert matcher_client.get("/c/bank/SRC/changes").status_code == 403


def test_changes_page_query_count_does_not_grow_with_its_contents(curator_client):
    # given two banks, with 2 and 20 single-content changes (plus signals of two types each)
    counts = []
    for name, n in (("SMALL", 2), ("BIG", 20)):
        bank = make_bank(name)
        for i in range(n):
            make_content(bank, {"pdq": f"{i + 16:x}" * 32, "video_md5": f"{i + 16:x}" * 16})
        feed(curator_client, name)  # warm the key cache
        # when a page of each is read
        with CaptureQueriesContext(connection) as queries:
            assert len(feed(curator_client, name)["changes"]) == n
        counts.append(len(queries))
    # then both take the same number of queries
    assert counts[0] == counts[1], counts
