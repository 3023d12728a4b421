"""
The review write paths on the embedded SQLite default, in a real process on a SQLite file: the case
upsert (opening and joining, severity), quarantine's count, suppression, the clusterer's batch and
its update of the cases' priority. Their SQL is hand-written for PostgreSQL first; this is where a
function SQLite lacks (LEAST, GREATEST, ...) would show.
"""

import json

from tests.banks.test_sqlite_concurrency import _env, _manage, _wait

WALK = """
import json
from datetime import timedelta
from django.utils import timezone
from banks.models import Bank
from banks.services import bank_content_create, bank_create
from matching import clustering
from reviews.models import Case, Cluster, MatchLog, Quarantine, Submission
from reviews.services import match_log_record, rules_cache_clear, submission_remember
from reviews.services.match_log import MatchHit

PDQ = "f" * 64
bank = bank_create(name="HIGH")
Bank.objects.filter(pk=bank.pk).update(severity=3, quarantine_threshold=2, quarantine_window_hours=24)
memes = bank_create(name="MEMES")
Bank.objects.filter(pk=memes.pk).update(suppressing=True)
content = bank_content_create(bank=bank, signals={"pdq": PDQ})
meme = bank_content_create(bank=memes, signals={"pdq": "0" * 64})
rules_cache_clear()

def log(content_id, *hits):
    sid = submission_remember(signal_type="pdq", signal_value=PDQ, platform_content_id=content_id, matched=True)
    return match_log_record(signal_type="pdq", signal_value=PDQ, platform_content_id=content_id,
                            submission_id=sid, hits=[MatchHit(c.pk, c.bank_id, c.bank.name, 0) for c in hits])

log("post-1", content)
log("post-1", content)           # joins its open case
log("post-2", content)
log("post-3", content)           # the third distinct content id: over the threshold of 2
log("post-4", content, meme)     # suppressed
Submission.objects.update(created_at=timezone.now() - timedelta(seconds=30))  # past the clusterer's settle lag
clustering.clusters_update(budget_seconds=20)
out = {
    "cases": sorted((c.platform_content_id, c.match_count, c.severity, c.cluster_size, c.priority)
                    for c in Case.objects.all()),
    "quarantined": list(Quarantine.objects.values_list("matched_content_id", flat=True)) == [content.pk],
    "held": MatchLog.objects.filter(quarantined=True).count(),
    "suppressed": MatchLog.objects.filter(suppressed=True).count(),
    "clusters": list(Cluster.objects.values_list("submission_count", flat=True)),
}
print("RESULT " + json.dumps(out))
"""


def test_the_review_write_paths_run_on_sqlite(tmp_path):
    env = _env(tmp_path, OMM_CLUSTERING="true", OMM_ACTION_RULES_CACHE_SECONDS="0")
    code, _, err = _wait(_manage("migrate", "--noinput", env=env))
    assert code == 0, err
    code, out, err = _wait(_manage("shell", "-c", WALK, env=env))
    assert code == 0, err[-3000:]
    result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    # post-1 (two matches, joined) and post-2 opened cases of severity 3; post-3 crossed the
    # threshold and was held; post-4 was suppressed. Every submission is in one cluster of 5.
    assert result["quarantined"] and result["held"] == 1 and result["suppressed"] == 2
    assert result["clusters"] == [5]
    assert [row[:3] for row in result["cases"]] == [["post-1", 2, 3], ["post-2", 1, 3]]
    for _, match_count, severity, cluster_size, priority in result["cases"]:
        assert cluster_size == 5 and priority == severity * 1_000_000 + match_count + cluster_size
