"""GET /c/matches, /c/matches/<id>, /c/matches/export and manage.py export_matches."""

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from banks.services import bank_update
from reviews import services
from reviews.models import MatchLog
from tests.reviews.conftest import PDQ, hit_for, make_bank, make_content

pytestmark = pytest.mark.django_db


@pytest.fixture
def matches():
    """Three matches: A (10 days ago, reviewed), A (now), B (now), oldest first."""
    a, b = make_content(make_bank("A")), make_content(make_bank("B"))
    old = services.match_log_record(
        signal_type="pdq", signal_value=PDQ, hits=[hit_for(a, 2)], platform_content_id='=HYPERLINK("x")'
    )
    MatchLog.objects.filter(pk__in=old).update(created_at=timezone.now() - timedelta(days=10))
    services.review_record(content_ids=[a.pk], verdict="true_positive")
    new_a = services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit_for(a, 0)])
    new_b = services.match_log_record(
        signal_type="pdq", signal_value=PDQ, hits=[hit_for(b, 5)], content_uri="https://example.org/post/1"
    )
    return {"old": old[0], "a": new_a[0], "b": new_b[0], "content_a": a, "content_b": b}


def test_match_list_is_newest_first_with_shape(curator_client, matches):
    response = curator_client.get("/c/matches")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [m["id"] for m in body["results"]] == [matches["b"], matches["a"], matches["old"]]
    first = body["results"][0]
    assert first["bank"] == "B" and first["content_id"] == matches["content_b"].pk and first["distance"] == 5
    assert first["content_uri"] == "https://example.org/post/1" and first["platform_content_id"] is None
    assert first["reviewed"] is False and first["verdict"] is None and first["rules"] == []
    assert set(first) >= {
        "created_at",
        "source",
        "signal_type",
        "signal_value",
        "bank_id",
        "reviewed_at",
        "review_id",
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("bank=A", ["a", "old"]),
        ("bank=NOPE", []),
        ("reviewed=true", ["old"]),
        ("reviewed=false", ["b", "a"]),
        ("verdict=true_positive", ["old"]),
        ("source=retroaction", []),
        ("signal_type=pdq&bank=B", ["b"]),
    ],
)
def test_match_list_filters(curator_client, matches, query, expected):
    body = curator_client.get(f"/c/matches?{query}").json()
    assert [m["id"] for m in body["results"]] == [matches[k] for k in expected]


def test_match_list_time_range_accepts_iso_and_unix_seconds(curator_client, matches):
    five_days_ago = timezone.now() - timedelta(days=5)
    recent = curator_client.get(f"/c/matches?since={five_days_ago.isoformat().replace('+00:00', 'Z')}").json()
    assert {m["id"] for m in recent["results"]} == {matches["a"], matches["b"]}
    older = curator_client.get(f"/c/matches?until={int(five_days_ago.timestamp())}").json()
    assert [m["id"] for m in older["results"]] == [matches["old"]]
    day = (timezone.now() - timedelta(days=10)).date().isoformat()
    assert curator_client.get(f"/c/matches?since={day}").json()["count"] == 3


def test_match_list_bank_filter_follows_renames(curator_client, matches):
    bank_update(bank=matches["content_a"].bank, name="RENAMED")
    body = curator_client.get("/c/matches?bank=RENAMED").json()
    assert {m["id"] for m in body["results"]} == {matches["a"], matches["old"]}
    assert {m["bank"] for m in body["results"]} == {"A"}  # the name when it matched


def test_match_list_content_id_filter(curator_client, matches):
    body = curator_client.get(f"/c/matches?content_id={matches['content_b'].pk}").json()
    assert [m["id"] for m in body["results"]] == [matches["b"]]


@pytest.mark.parametrize(
    "query",
    [
        "since=yesterday",
        "until=2020-13-01",
        "reviewed=maybe",
        "verdict=meh",
        "source=x",
        "content_id=abc",
        "content_id=%C2%B2",  # "²": a digit that int() cannot read (a 500 before issue #13)
        "since=2030-01-01&until=2020-01-01",
    ],
)
def test_match_list_bad_filters_are_400(curator_client, matches, query):
    response = curator_client.get(f"/c/matches?{query}")
    assert response.status_code == 400
    assert response.json()["message"]


def test_match_list_page_out_of_range_is_404(curator_client, matches):
    assert curator_client.get("/c/matches?page=999").status_code == 404


def test_match_list_is_paginated(curator_client, matches):
    body = curator_client.get("/c/matches?page_size=2").json()
    assert len(body["results"]) == 2 and body["next"]
    assert len(curator_client.get(body["next"]).json()["results"]) == 1


def test_match_list_query_count_is_constant(curator_client, django_assert_num_queries):
    bank = make_bank()
    content = make_content(bank)
    for _ in range(30):
        services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit_for(content)])
    curator_client.get("/c/matches?page_size=1")  # warm the key cache
    with django_assert_num_queries(2):  # count, page
        response = curator_client.get("/c/matches?bank=BANK")
    assert len(response.json()["results"]) == 30


def test_match_detail_and_404(curator_client, matches):
    response = curator_client.get(f"/c/matches/{matches['a']}")
    assert response.status_code == 200 and response.json()["id"] == matches["a"]
    response = curator_client.get("/c/matches/999999")
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def _streamed(response) -> str:
    return b"".join(response.streaming_content).decode()


def test_export_csv_streams_filtered_rows_oldest_first(curator_client, matches):
    response = curator_client.get("/c/matches/export?format=csv&bank=A")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(_streamed(response))))
    assert [int(r["id"]) for r in rows] == [matches["old"], matches["a"]]
    assert rows[0]["reviewed"] == "true" and rows[0]["verdict"] == "true_positive"
    assert rows[1]["reviewed"] == "false" and rows[1]["verdict"] == "" and rows[1]["content_uri"] == ""
    # A caller's value that a spreadsheet would run as a formula is neutralised.
    assert rows[0]["platform_content_id"] == '\'=HYPERLINK("x")'


def test_export_jsonl(curator_client, matches):
    response = curator_client.get("/c/matches/export?format=jsonl&reviewed=false")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in _streamed(response).splitlines()]
    assert [line["id"] for line in lines] == [matches["a"], matches["b"]]
    assert lines[1]["content_uri"] == "https://example.org/post/1" and lines[1]["distance"] == 5


@pytest.mark.parametrize("query", ["", "format=xml", "format=csv&since=never"])
def test_export_bad_input_is_400_json(curator_client, matches, query):
    response = curator_client.get(f"/c/matches/export?{query}")
    assert response.status_code == 400
    assert response.json()["message"]


@pytest.mark.parametrize(
    "path", ["/c/matches", "/c/matches/1", "/c/matches/export?format=csv", "/c/matches/export?format=jsonl"]
)
def test_match_endpoints_need_curate_scope(anon_client, matcher_client, path):
    assert anon_client.get(path).status_code == 401
    response = matcher_client.get(path)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_export_command_writes_file(tmp_path, matches):
    out = tmp_path / "week.csv"
    call_command("export_matches", "--format", "csv", "--bank", "A", "-o", str(out), stderr=io.StringIO())
    rows = list(csv.DictReader(out.open()))
    assert [int(r["id"]) for r in rows] == [matches["old"], matches["a"]]


def test_export_command_jsonl_to_stdout_with_since(matches):
    stdout = io.StringIO()
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    call_command("export_matches", "--format", "jsonl", "--since", since, stdout=stdout)
    ids = [json.loads(line)["id"] for line in stdout.getvalue().splitlines()]
    assert ids == [matches["a"], matches["b"]]


def test_export_command_bad_since_is_an_error(matches):
    with pytest.raises(CommandError):
        call_command("export_matches", "--since", "last tuesday")


def test_export_jsonl_is_the_api_representation(curator_client, matches):
    # Given matches with and without a review, a content_uri, a platform id and rules, when
    # exported as JSON lines, then each line is exactly what GET /c/matches/<id> answers (nulls,
    # booleans, times and rule objects included): the export and the API never disagree.
    MatchLog.objects.filter(pk=matches["a"]).update(rules=[{"id": 7, "name": "notify"}])
    lines = [json.loads(line) for line in _streamed(curator_client.get("/c/matches/export?format=jsonl")).splitlines()]
    assert len(lines) == 3
    for line in lines:
        assert line == curator_client.get(f"/c/matches/{line['id']}").json()
    by_id = {line["id"]: line for line in lines}
    assert by_id[matches["a"]]["content_uri"] is None and by_id[matches["a"]]["platform_content_id"] is None
    assert by_id[matches["a"]]["rules"] == [{"id": 7, "name": "notify"}]


def test_export_csv_is_the_api_representation_as_text(curator_client, matches):
    # Given the same rows, when exported as CSV, then each cell is the API's value as text: null
    # is an empty cell, booleans are true/false, times as the API writes them, rules by name.
    MatchLog.objects.filter(pk=matches["a"]).update(rules=[{"id": 7, "name": "notify"}, {"id": 8, "name": "log"}])
    rows = list(csv.DictReader(io.StringIO(_streamed(curator_client.get("/c/matches/export?format=csv")))))
    assert len(rows) == 3
    for row in rows:
        api = curator_client.get(f"/c/matches/{row['id']}").json()
        for field, value in api.items():
            if field == "rules":
                expected = ";".join(rule["name"] for rule in value)
            elif value is None:
                expected = ""
            elif isinstance(value, bool):
                expected = "true" if value else "false"
            elif isinstance(value, str) and value.startswith("="):
                expected = "'" + value  # formula-neutralised (see the CSV test above)
            else:
                expected = str(value)
            assert row[field] == expected, (field, row[field], value)
    assert {row["rules"] for row in rows} == {"", "notify;log"}
