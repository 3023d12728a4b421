"""
The review queue at scale: GET /c/cases and the /ui/queue/ page with 100,000 open cases (and
20,000 closed ones), their matches, and 1,000,000 clustered submissions in 100,000 clusters.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/omm_cases_bench DJANGO_DEBUG=true \
        python bench/bench_cases.py [--cases 100000] [--submissions 1000000] [--reps 30]

The database is reset first (only one whose name contains "bench") and filled with SQL
(generate_series), then analysed. Each request is made in-process through Django's test client
(the whole view, serializers, templates and queries; no network), `--reps` times after three
warm-ups; it prints p50, p95 and max in milliseconds and the number of queries of one request.
The issue's bars: the queue page under 300 ms, /c/cases under 100 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import database_recreate  # noqa: E402

BANKS = 20
CONTENTS = 50_000


def _setup(url: str) -> None:
    database_recreate(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omm_project.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _fill(*, cases: int, closed: int, submissions: int) -> None:
    """Banks, contents, clusters, submissions, cases and their matches, as SQL (seconds, not minutes)."""
    from django.db import connection

    from banks.models import Bank, BankContent
    from reviews.models import Case, CaseMatch, Cluster, MatchLog, Submission
    from reviews.services.cases import priority_sql

    banks = Bank.objects.bulk_create(
        Bank(name=f"BANK_{i}", labels=[f"lab{i % 5}"], severity=i % 5) for i in range(BANKS)
    )
    bank_ids = [b.pk for b in banks]
    clusters = max(1, submissions // 10)
    t = {m.__name__: m._meta.db_table for m in (Bank, BankContent, Case, CaseMatch, Cluster, MatchLog, Submission)}
    statements = [
        f"""INSERT INTO {t["BankContent"]} (bank_id, disable_until_ts, original_media_uri, platform_content_id,
                content_uri, labels, note, created_at, updated_at)
            SELECT (ARRAY{bank_ids})[1 + i % {BANKS}], 1, '', 'bank-' || i, '',
                   jsonb_build_array('c' || (i % 7)), '', now(), now()
            FROM generate_series(1, {CONTENTS}) i""",
        f"""INSERT INTO {t["Cluster"]} (signal_type, representative_value, first_seen_at, last_seen_at,
                submission_count, content_id_count, last_hour_count, hourly_counts)
            SELECT 'pdq', md5(i::text) || md5((i + 1)::text), now() - interval '6 days', now(),
                   10, 10, i % 60, '{{}}'::jsonb
            FROM generate_series(1, {clusters}) i""",
        f"""INSERT INTO {t["Submission"]} (created_at, signal_type, signal_value, platform_content_id,
                content_uri, cluster_id)
            SELECT now() - (i % 600000) * interval '1 second', 'pdq', md5(i::text) || md5((-i)::text),
                   'post-' || i, '', (SELECT min(id) FROM {t["Cluster"]}) + i % {clusters}
            FROM generate_series(1, {submissions}) i""",
        # Open cases, then closed ones; severity and match count spread, cluster sizes from their cluster.
        f"""INSERT INTO {t["Case"]} (platform_content_id, content_uri, state, verdict, match_count, severity,
                cluster_id, cluster_size, spreading, priority, created_at, updated_at, closed_at)
            SELECT 'post-' || i, 'https://example.org/p/' || i || '.jpg',
                   CASE WHEN i <= {cases} THEN 'open' ELSE 'closed' END,
                   CASE WHEN i <= {cases} THEN NULL ELSE 'true_positive' END,
                   1 + i % 3, i % 5, (SELECT min(id) FROM {t["Cluster"]}) + i % {clusters}, 10, i % 97 = 0,
                   {priority_sql(severity="i % 5", spreading="i % 97 = 0", match_count="1 + i % 3", cluster_size="10")},
                   now() - (i % 100000) * interval '1 minute', now(),
                   CASE WHEN i <= {cases} THEN NULL ELSE now() END
            FROM generate_series(1, {cases + closed}) i""",
        f"""INSERT INTO {t["CaseMatch"]} (case_id, match_log_id, created_at, source, signal_type, signal_value,
                content_id, matched_content_id, bank_id, matched_bank_id, bank_name, distance)
            SELECT c.id, c.id * 3 + k, c.created_at, 'lookup', 'pdq', md5(c.id::text) || md5(k::text),
                   bc.id, bc.id, bc.bank_id, bc.bank_id, b.name, (c.id + k) % 32
            FROM {t["Case"]} c
            CROSS JOIN LATERAL generate_series(1, c.match_count) k
            JOIN {t["BankContent"]} bc ON bc.id = (SELECT min(id) FROM {t["BankContent"]}) + (c.id * 7 + k) % {CONTENTS}
            JOIN {t["Bank"]} b ON b.id = bc.bank_id""",
        f"""INSERT INTO {t["MatchLog"]} (created_at, source, signal_type, signal_value, platform_content_id,
                content_uri, content_id, matched_content_id, bank_id, matched_bank_id, bank_name, distance,
                rules, verdict, suppressed, quarantined)
            SELECT m.created_at, 'lookup', 'pdq', m.signal_value, 'post-' || m.case_id, '', m.content_id,
                   m.matched_content_id, m.bank_id, m.matched_bank_id, m.bank_name, m.distance, '[]'::jsonb, '',
                   false, false
            FROM {t["CaseMatch"]} m""",
    ]
    with connection.cursor() as cursor:
        for sql in statements:
            started = time.perf_counter()
            cursor.execute(sql)
            table = sql.split()[2]
            print(f"  {table:<24} {cursor.rowcount:>9,} rows  {time.perf_counter() - started:6.1f} s", flush=True)
        cursor.execute("ANALYZE")


def _clients():
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.test import Client
    from rest_framework.test import APIClient

    from omm_project.core.services import api_key_create

    _, raw = api_key_create(name="bench-review", scopes=["review"])
    api = APIClient(HTTP_HOST="localhost")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    user = get_user_model().objects.create_user(username="rita", password="bench-pass-1")
    user.groups.add(Group.objects.get(name="reviewers"))
    ui = Client(HTTP_HOST="localhost")
    ui.force_login(user)
    return api, ui


def _measure(client, path: str, reps: int) -> tuple[list[float], int]:
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections, connection
    from django.test.utils import CaptureQueriesContext

    # As Django's test runner does: keep one connection across requests, so its queries are
    # counted (a deployment keeps it too, with CONN_MAX_AGE).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)

    for _ in range(3):
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.content[:300])
    connection.queries_log.clear()  # a full log (9000 entries, from the fill) would count nothing
    with CaptureQueriesContext(connection) as queries:
        client.get(path)
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return times, len(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=100_000, help="open cases")
    parser.add_argument("--closed", type=int, default=20_000, help="closed cases")
    parser.add_argument("--submissions", type=int, default=1_000_000, help="clustered submissions")
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/omm_cases_bench")
    print(f"load average before: {open('/proc/loadavg').read().strip()}")
    _setup(url)
    started = time.perf_counter()
    _fill(cases=args.cases, closed=args.closed, submissions=args.submissions)
    print(f"filled in {time.perf_counter() - started:.1f} s")
    api, ui = _clients()
    from reviews.models import Case

    middle = max(1, args.cases // 100)  # a page in the middle (50 a page)
    case_id = Case.objects.order_by("-priority", "created_at", "id").values_list("pk", flat=True).first()
    requests = [
        ("api", api, "/c/cases"),
        ("api", api, "/c/cases?state=open"),
        ("api", api, f"/c/cases?state=open&page={middle}"),
        ("api", api, "/c/cases?state=open&bank=BANK_3"),
        ("api", api, "/c/cases?state=open&label=lab2"),
        ("api", api, "/c/cases?state=open&min_priority=3000000"),
        ("api", api, f"/c/case/{case_id}"),
        ("ui", ui, "/ui/queue/"),
        ("ui", ui, "/ui/queue/?bank=BANK_3"),
        ("ui", ui, f"/ui/queue/?page={middle}"),
        ("ui", ui, f"/ui/case/{case_id}/"),
        ("ui", ui, "/ui/dashboard/"),
    ]
    print(f"\n{'request':<48} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'queries':>8}")
    for _, client, path in requests:
        times, queries = _measure(client, path, args.reps)
        p95 = statistics.quantiles(times, n=20)[-1]
        print(f"{path:<48} {statistics.median(times):8.1f} {p95:8.1f} {max(times):8.1f} {queries:8d}", flush=True)
    print(f"\nload average after: {open('/proc/loadavg').read().strip()}")


if __name__ == "__main__":
    main()
