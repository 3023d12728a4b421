"""The clusterer: submissions grouped by the matching index within the window, one batch per transaction."""

import threading
from datetime import timedelta
from unittest import mock

import numpy as np
import pytest
from django.db import connection, transaction
from django.utils import timezone

from matching import clustering
from matching.cluster_window import ClusterWindow
from matching.engine import PdqKind
from omm_project.lib import pytx
from reviews import services
from reviews.models import Case, Cluster, ClusteringCursor, Submission, WebhookDelivery, WebhookEndpoint
from reviews.services import clusters as cluster_service
from reviews.services.cases import priority_sql
from reviews.services.webhooks import webhook_endpoint_create
from tests.builders import MD5, MD5_OTHER, PDQ, PDQ_FAR, make_bank, make_content
from tests.concurrency import run_together

pytestmark = pytest.mark.django_db


def flip(value: str, bits: int) -> str:
    """`value` with its first `bits` bits flipped: at Hamming distance `bits` from it."""
    raw = bytearray(bytes.fromhex(value))
    for bit in range(bits):
        raw[bit // 8] ^= 0x80 >> (bit % 8)
    return raw.hex()


@pytest.fixture(autouse=True)
def fresh_windows():
    clustering.windows_forget()  # each test's database starts empty; so must the process's memory
    yield
    clustering.windows_forget()


@pytest.fixture
def content(db):
    return make_content(make_bank("BANK"))


def submit(
    value: str = PDQ,
    *,
    content=None,
    content_id: str = "",
    minutes_ago: float = 1.0,
    signal_type: str = "pdq",
) -> Submission:
    """A remembered lookup (settled: written `minutes_ago`), with a match (and case) when `content` is given."""
    submission = Submission.objects.create(
        signal_type=signal_type,
        signal_value=value,
        platform_content_id=content_id,
        created_at=timezone.now() - timedelta(minutes=minutes_ago),
    )
    if content is not None:
        services.match_log_record(
            signal_type=signal_type,
            signal_value=value,
            hits=[services.MatchHit(content.pk, content.bank_id, content.bank.name, 0)],
            platform_content_id=content_id,
            submission_id=submission.pk,
        )
    return submission


def cluster_of(submission: Submission) -> int | None:
    submission.refresh_from_db()
    return submission.cluster_id


def test_a_submission_joins_the_cluster_of_its_nearest_neighbour_within_the_threshold(settings, content):
    settings.OMM_CLUSTER_PDQ_THRESHOLD = 31
    # Given a first submission, one at distance 31 of it, a far one, and one at 32 of the first
    first = submit(PDQ, content=content, content_id="a")
    near = submit(flip(PDQ, 31), content=content, content_id="b")
    far = submit(PDQ_FAR, content=content, content_id="c")
    edge = submit(flip(PDQ, 32), content=content, content_id="d")
    # When the clusterer runs
    assert clustering.clusters_update()["pdq"] == 4
    # Then the near one joined the first's cluster, the far one started its own
    assert cluster_of(near) == cluster_of(first) is not None
    assert cluster_of(far) not in (None, cluster_of(first))
    # the edge one (32 bits from the first, but within 31 of the near one): the nearest neighbour's cluster
    assert cluster_of(edge) == cluster_of(first)
    cluster = Cluster.objects.get(pk=cluster_of(first))
    assert (cluster.signal_type, cluster.representative_value) == ("pdq", PDQ)
    assert (cluster.submission_count, cluster.content_id_count) == (3, 3)


def test_distance_32_starts_a_new_cluster_and_nearest_wins_between_two_clusters(settings, content):
    settings.OMM_CLUSTER_PDQ_THRESHOLD = 31
    a = submit(PDQ, content=content)
    b = submit(flip(PDQ, 32), content=content)  # just past the threshold: a cluster of its own
    clustering.clusters_update()
    assert cluster_of(a) != cluster_of(b)
    # a later one at 20 bits from b's hash and 12 from a's joins a's (the nearer)
    c = submit(flip(PDQ, 12), content=content)
    clustering.clusters_update()
    assert cluster_of(c) == cluster_of(a)
    assert Cluster.objects.count() == 2


def test_exact_types_cluster_equal_values(content):
    a = submit(MD5, content=content, signal_type="video_md5", content_id="a")
    b = submit(MD5, content=content, signal_type="video_md5", content_id="b")
    c = submit(MD5_OTHER, content=content, signal_type="video_md5", content_id="c")
    clustering.clusters_update()
    assert cluster_of(a) == cluster_of(b) is not None
    assert cluster_of(c) not in (None, cluster_of(a))
    assert Cluster.objects.get(pk=cluster_of(a)).submission_count == 2


@pytest.mark.parametrize("value", [PDQ, MD5])
def test_a_neighbour_older_than_the_window_is_not_joined(settings, content, value):
    settings.OMM_CLUSTER_WINDOW_HOURS = 1
    signal_type = "pdq" if value == PDQ else "video_md5"
    old = submit(value, content=content, minutes_ago=90, signal_type=signal_type)
    recent = submit(value, content=content, minutes_ago=20, signal_type=signal_type)
    clustering.clusters_update()
    assert cluster_of(old) != cluster_of(recent)
    # and the same holds for a window reloaded from the database (another process)
    later = submit(value, content=content, minutes_ago=1, signal_type=signal_type)
    clustering.windows_forget()
    clustering.clusters_update()
    assert cluster_of(later) == cluster_of(recent)


def test_the_window_lets_go_of_expired_entries():
    # Given a window of one hour holding 100 submissions two hours old and 10 recent ones
    window = ClusterWindow(kind=PdqKind(pytx.signal_types()["pdq"]), window_seconds=3600, threshold=31)
    now = 10_000_000.0
    window.load([(i, now - 7200, flip(PDQ, i % 200), 1) for i in range(100)], cursor=100)
    for i in range(10):
        window.assign(value=flip(PDQ_FAR, i), at=now)
    window.commit(new_ids={-1: 2}, cursor=110)
    # When it expires what is older than the window
    window.expire(now=now)
    # Then only the recent ones are held, and they still find each other
    assert window.size == 10
    assert window.assign(value=PDQ_FAR, at=now + 1).cluster_id == 2
    assert window.assign(value=PDQ, at=now + 1).cluster_id < 0  # its old neighbours are gone


@pytest.mark.parametrize("delta_max", [100, 32_768])
def test_a_batch_is_assigned_as_one_submission_after_another(monkeypatch, delta_max):
    # Given two equal windows (a small delta_max makes batches compact the window first) holding
    # clusters of near-duplicates, some of them older than the window
    from matching import cluster_window

    monkeypatch.setattr(cluster_window, "DELTA_MAX", delta_max)
    rng = np.random.default_rng(5)
    seeds = [rng.integers(0, 256, 32, dtype=np.uint8) for _ in range(8)]

    def near(seed: np.ndarray, bits: int) -> str:
        h = seed.copy()
        for bit in rng.choice(256, size=bits, replace=False):
            h[bit // 8] ^= 1 << (bit % 8)
        return h.tobytes().hex()

    now = 10_000_000.0
    held = [
        (i, now - (7200 if i % 5 == 0 else 60), near(seeds[i % 8], int(rng.integers(0, 40))), 1 + i % 8)
        for i in range(120)
    ]
    one_by_one, batched = (
        ClusterWindow(kind=PdqKind(pytx.signal_types()["pdq"]), window_seconds=3600, threshold=31) for _ in range(2)
    )
    for window in (one_by_one, batched):
        window.load(held, cursor=120)
    # When the same batches (near-duplicates at 0-40 bits, exact repeats within a batch, new
    # content) are assigned one by one and as batches
    compacted = 0
    for round_ in range(3):
        rows = [(near(seeds[int(rng.integers(0, 8))], int(rng.integers(0, 40))), now + round_) for _ in range(60)]
        rows += [rows[3], (rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex(), now + round_)]
        rows += [rows[-1]]  # a new one, then its repeat within the batch: it joins the batch's own
        rows[1] = (rows[1][0], now + round_ - 1)  # a later id with an earlier time (concurrent inserts)
        expected = [one_by_one.assign(value=value, at=at) for value, at in rows]
        bases_before = batched._base_n
        got = batched.assign_many(rows)
        compacted += batched._base_n != bases_before
        # Then every answer is the same: cluster (new ones numbered alike) and distance
        assert got == expected
        new_ids = {a.cluster_id: 1000 * (round_ + 1) - a.cluster_id for a in expected if a.cluster_id < 0}
        for window in (one_by_one, batched):
            window.commit(new_ids=new_ids, cursor=200 + round_)
    assert batched.size == one_by_one.size
    assert compacted if delta_max == 100 else not compacted  # the batch path made room first


def test_a_rerun_changes_nothing(content):
    for i in range(5):
        submit(flip(PDQ, i), content=content, content_id=f"p{i}")
    clustering.clusters_update()
    before = list(Cluster.objects.values_list("pk", "submission_count", "content_id_count", "hourly_counts"))
    assignments = list(Submission.objects.order_by("pk").values_list("pk", "cluster_id"))
    # When the task runs again, in this process and in a fresh one
    clustering.clusters_update()
    clustering.windows_forget()
    clustering.clusters_update()
    assert list(Cluster.objects.values_list("pk", "submission_count", "content_id_count", "hourly_counts")) == before
    assert list(Submission.objects.order_by("pk").values_list("pk", "cluster_id")) == assignments


def test_a_crash_before_commit_leaves_nothing_half_written_and_the_next_run_redoes_the_batch(content):
    first = submit(PDQ, content=content, content_id="a")
    second = submit(flip(PDQ, 3), content=content, content_id="b")
    # When the batch fails after its assignments and counts, before the cursor moves and commits
    with mock.patch.object(cluster_service, "_cursor_advance", side_effect=RuntimeError("worker died")):
        with pytest.raises(RuntimeError):
            clustering.clusters_update()
    # Then nothing of it was written
    assert Cluster.objects.count() == 0
    assert not Submission.objects.filter(cluster__isnull=False).exists()
    assert not Case.objects.filter(cluster__isnull=False).exists()
    assert not ClusteringCursor.objects.filter(last_submission_id__gt=0).exists()
    # And the next run does the whole batch once
    clustering.clusters_update()
    assert cluster_of(first) == cluster_of(second) is not None
    assert Cluster.objects.get().submission_count == 2


@pytest.mark.django_db(transaction=True)
def test_a_second_worker_skips_a_type_the_first_is_clustering(content):
    if not connection.features.has_select_for_update_skip_locked:
        pytest.skip("SQLite serialises the batches with its write lock instead")
    submit(PDQ, content=content)
    ClusteringCursor.objects.create(signal_type="pdq")
    holding, release = threading.Event(), threading.Event()

    def worker(i: int):
        if i == 0:  # the first worker: in the middle of a batch (holds the cursor row)
            with transaction.atomic():
                ClusteringCursor.objects.select_for_update().get(signal_type="pdq")
                holding.set()
                release.wait(30)
            return None
        holding.wait(30)
        try:
            window = ClusterWindow(kind=PdqKind(pytx.signal_types()["pdq"]), window_seconds=3600, threshold=31)
            return cluster_service.cluster_batch_run(signal_type="pdq", window=window)
        finally:
            release.set()

    _, second = run_together(worker, n=2)
    assert second.busy and second.read == 0
    assert not Submission.objects.filter(cluster__isnull=False).exists()
    # once the first is done, the next run clusters it
    clustering.clusters_update()
    assert Submission.objects.filter(cluster__isnull=False).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_cluster_each_submission_once(content):
    for i in range(30):
        submit(flip(PDQ, i % 5) if i % 2 else flip(PDQ_FAR, i % 5), content=content, content_id=f"p{i}")

    def worker(i: int):
        window = ClusterWindow(kind=PdqKind(pytx.signal_types()["pdq"]), window_seconds=3600, threshold=31)
        results = []
        for _ in range(5):
            results.append(cluster_service.cluster_batch_run(signal_type="pdq", window=window, batch_size=7))
        return results

    results = run_together(worker, n=2)
    assert not any(isinstance(r, BaseException) for r in results), results
    clustering.clusters_update()  # whatever the busy one skipped
    assert sum(r.read for rs in results for r in rs) <= 30
    assert Submission.objects.filter(cluster__isnull=False).count() == 30
    assert sorted(Cluster.objects.values_list("submission_count", flat=True)) == [15, 15]


def test_counts_hourly_counts_and_last_hour(content):
    now = timezone.now()
    for minutes, cid in [(150, "a"), (90, "a"), (50, "b"), (10, "c"), (5, "c")]:
        submit(PDQ, content=content, content_id=cid, minutes_ago=minutes)
    clustering.clusters_update()
    cluster = Cluster.objects.get()
    assert (cluster.submission_count, cluster.content_id_count) == (5, 3)
    assert sum(cluster.hourly_counts.values()) == 5
    key = (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H")
    assert cluster.hourly_counts[key] >= 1
    assert cluster.last_hour_count == 3  # 50, 10 and 5 minutes ago: within the hour up to the last one
    assert cluster.first_seen_at < cluster.last_seen_at
    assert cluster.spreading_since is None


def test_a_cluster_that_grows_fast_is_spreading_once_and_announced_once(settings, content):
    settings.OMM_CLUSTER_SPREADING_PER_HOUR = 3
    endpoint, _ = webhook_endpoint_create(name="hooks", url="https://hooks.example.org/x")
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(events=["cluster.spreading"])
    for i in range(3):
        submit(flip(PDQ, i), content=content, content_id=f"p{i}", minutes_ago=10)
    clustering.clusters_update()
    assert Cluster.objects.get().spreading_since is None  # 3 is not more than 3
    submit(PDQ, content=content, content_id="p9", minutes_ago=5)
    clustering.clusters_update()
    cluster = Cluster.objects.get()
    assert cluster.spreading_since is not None and cluster.last_hour_count == 4
    for i in range(3):
        submit(PDQ, content=content, content_id=f"q{i}", minutes_ago=4)
    clustering.clusters_update()
    assert Cluster.objects.get().spreading_since == cluster.spreading_since
    delivery = WebhookDelivery.objects.get(event_type="cluster.spreading")
    assert delivery.subject == f"cluster:{cluster.pk}"
    assert delivery.payload["data"]["cluster_id"] == cluster.pk
    cases = Case.objects.all()
    assert cases.count() == 7
    assert all(case.spreading and case.cluster_id == cluster.pk for case in cases)


def test_a_cases_priority_rises_with_its_cluster(settings):
    settings.OMM_CLUSTER_SPREADING_PER_HOUR = 1000
    a, b = make_content(make_bank("A")), make_content(make_bank("B"))
    # Given two cases of the same content, different content ids
    submit(PDQ, content=a, content_id="post-1")
    submit(flip(PDQ, 4), content=b, content_id="post-2")
    clustering.clusters_update()
    case = Case.objects.get(platform_content_id="post-1")
    assert case.cluster_id is not None and case.cluster_size == 2
    # When more of the same content comes
    for i in range(3):
        submit(flip(PDQ, 5 + i), content=a, content_id=f"other-{i}")
    clustering.clusters_update()
    # Then the open case's priority follows the one rule, with its cluster's size
    case.refresh_from_db()
    assert case.cluster_size == 5
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT "
            + priority_sql(severity="%(sev)s", spreading="%(spr)s", match_count="%(n)s", cluster_size="%(size)s"),
            {"sev": case.severity, "spr": False, "n": case.match_count, "size": 5},
        )
        assert case.priority == cursor.fetchone()[0]
    assert case.priority > 2  # above its match count alone
    # a closed case no longer follows
    services.case_verdict_record(case_id=case.pk, verdict="skip")
    submit(PDQ, content=a, content_id="post-3")
    clustering.clusters_update()
    case.refresh_from_db()
    assert case.cluster_size == 5


def test_unmatched_submissions_are_clustered_only_when_all_submissions_are(settings, content):
    settings.OMM_RETROACTION_WINDOW_HOURS = 24  # remembered for retroaction, matched or not
    settings.OMM_CLUSTER_ALL_SUBMISSIONS = False
    unmatched = submit(PDQ)
    matched = submit(PDQ, content=content)
    clustering.clusters_update()
    assert cluster_of(unmatched) is None and cluster_of(matched) is not None
    settings.OMM_CLUSTER_ALL_SUBMISSIONS = True
    later = submit(flip(PDQ, 2))
    clustering.clusters_update()
    assert cluster_of(later) == cluster_of(matched)


def test_remembering_follows_retroaction_and_clustering(settings):
    settings.OMM_RETROACTION_WINDOW_HOURS = 0
    remember = services.submission_remember
    settings.OMM_CLUSTERING = False
    assert remember(signal_type="pdq", signal_value=PDQ, matched=True) is None
    settings.OMM_CLUSTERING = True
    assert remember(signal_type="pdq", signal_value=PDQ, matched=False) is None
    assert remember(signal_type="pdq", signal_value=PDQ, matched=True) is not None
    settings.OMM_CLUSTER_ALL_SUBMISSIONS = True
    assert remember(signal_type="pdq", signal_value=PDQ, matched=False) is not None
    settings.OMM_CLUSTERING = False
    settings.OMM_RETROACTION_WINDOW_HOURS = 1
    assert remember(signal_type="pdq", signal_value=PDQ, matched=False) is not None
    assert Submission.objects.count() == 3


def test_clustering_off_does_nothing(settings, content):
    settings.OMM_CLUSTERING = False
    submit(PDQ, content=content)
    assert clustering.clusters_update() == {}
    assert not Cluster.objects.exists()


def test_an_unsettled_submission_waits_for_the_next_run(content):
    settled = submit(PDQ, content=content)
    fresh = submit(PDQ, content=content, minutes_ago=0)
    clustering.clusters_update()
    assert cluster_of(settled) is not None and cluster_of(fresh) is None
    assert ClusteringCursor.objects.get(signal_type="pdq").last_submission_id == settled.pk


def test_prune_drops_old_clusters_and_submissions_and_keeps_the_cases(settings, content):
    settings.OMM_RETROACTION_WINDOW_HOURS = 0
    settings.OMM_CLUSTER_WINDOW_HOURS = 1
    old = submit(PDQ, content=content, content_id="old", minutes_ago=120)
    clustering.clusters_update()
    assert Case.objects.get().cluster_id == cluster_of(old) is not None
    assert services.submissions_prune() == 1
    assert services.clusters_prune() == 1
    assert not Cluster.objects.exists()
    case = Case.objects.get()
    assert case.cluster_id is None and case.state == "open"


def test_prune_keeps_submissions_for_the_longer_window(settings):
    settings.OMM_RETROACTION_WINDOW_HOURS = 1
    settings.OMM_CLUSTER_WINDOW_HOURS = 3
    submit(PDQ, minutes_ago=120)
    submit(PDQ, minutes_ago=240)
    assert services.submissions_prune() == 1
    settings.OMM_CLUSTERING = False
    assert services.submissions_prune() == 1
