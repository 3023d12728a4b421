"""
Fault test: with the Celery broker unreachable, requests still answer what they did and commit it;
once the broker is back, beat's periodic tasks send every kind of lost work again.

The requests run in real transactions (transaction=True), so their after-commit sends really run
inside the request, against a broker on a closed port of 127.0.0.1 (connection refused at once).
The recovery half uses the test Redis as the real broker and reads the messages off its queue.
"""

import base64
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.utils import timezone

from banks.models import Bank, BankContent
from exchanges.models import ExchangeConfig
from exchanges.tasks import exchange_fetch_all_task
from matching import services as matching_services
from matching.tasks import index_build_all_task
from omm_project.celery import app as celery_app
from omm_project.lib import tasks as lib_tasks
from reviews import services as review_services
from reviews.models import ExchangeReport, MatchLog, RetroactionBatch, Submission, WebhookDelivery
from reviews.services import retroaction as retroaction_module
from tests.builders import MD5, PDQ, make_bank, make_content
from tests.reviews.conftest import make_exchange_content, make_rule, make_webhook

pytestmark = pytest.mark.django_db(transaction=True)

DEAD_BROKER = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def _use_broker(url: str) -> None:
    celery_app.conf.broker_url = url
    celery_app.conf.broker_transport_options = {"socket_connect_timeout": 1}
    # Drop the connection and producer pools built for the previous URL.
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def broker(settings):
    """Switch the broker: broker.down() / broker.up(); the live one is the test Redis."""
    live = celery_app.conf.broker_url
    saved_options = celery_app.conf.broker_transport_options
    settings.OMM_RETROACTION_WINDOW_HOURS = 1
    settings.OMM_RETROACTION_DELAY_SECONDS = 0
    client = redis.Redis.from_url(django_settings.REDIS_URL)

    class Broker:
        def down(self) -> None:
            _use_broker(DEAD_BROKER)
            lib_tasks.enqueue_resume()

        def up(self) -> None:
            _use_broker(live)
            lib_tasks.enqueue_resume()
            client.delete("celery")

        def sent(self) -> list[tuple[str, list]]:
            """(task name, args) of every message waiting on the live broker's default queue."""
            messages = []
            for raw in client.lrange("celery", 0, -1):
                message = json.loads(raw)
                args = json.loads(base64.b64decode(message["body"]))[0]
                messages.append((message["headers"]["task"], args))
            return messages

    yield Broker()
    _use_broker(live)
    celery_app.conf.broker_transport_options = saved_options
    lib_tasks.enqueue_resume()
    client.delete("celery")
    client.close()


@pytest.fixture
def rule_on_bank(db):
    bank = make_bank("SEL", labels=["csam"])
    content = make_content(bank, signals={"pdq": PDQ})
    webhook, _ = make_webhook("https://hooks.example.org/omm")  # never sent: no worker runs
    make_rule(webhook, banks=[bank])
    matching_services.index_build(signal_type="pdq")
    RetroactionBatch.objects.all().delete()  # as if its own retroaction had run
    return content


def test_lookup_firing_rules_answers_and_commits_with_the_broker_down(broker, rule_on_bank, runtime, matcher_client):
    # Given a rule on a bank whose content is loaded by the matcher, and a dead broker
    runtime.refresh()
    broker.down()
    # When a lookup matches it
    response = matcher_client.get("/m/lookup", {"signal": PDQ, "signal_type": "pdq"})
    # Then it answers the match, and the match, its delivery and the submission are committed
    assert response.status_code == 200, response.content
    assert list(response.json()) == ["SEL"]
    assert MatchLog.objects.filter(matched_content_id=rule_on_bank.pk).count() == 1
    assert WebhookDelivery.objects.filter(state="pending").count() == 1
    assert Submission.objects.count() == 1


def test_curation_answers_and_commits_with_the_broker_down(broker, curator_client):
    broker.down()
    # Creating a bank and adding content (which queues retroaction)
    assert curator_client.post("/c/banks", {"name": "OUTAGE"}, format="json").status_code == 201
    response = curator_client.post("/c/bank/OUTAGE/signal", {"pdq": PDQ, "video_md5": MD5}, format="json")
    assert response.status_code == 200, response.content
    content_id = response.json()["id"]
    assert BankContent.objects.filter(pk=content_id, bank__name="OUTAGE").exists()
    assert RetroactionBatch.objects.get().content_ids == [content_id]
    # Creating an exchange (which queues its first fetch), and asking for a fetch
    response = curator_client.post("/c/exchanges", {"bank": "EXCH", "api": "sample"}, format="json")
    assert response.status_code == 201, response.content
    assert ExchangeConfig.objects.filter(name="EXCH").exists() and Bank.objects.filter(name="EXCH").exists()
    assert curator_client.post("/c/exchange/EXCH/fetch").status_code in (200, 202)
    # A review that adds to a bank (retroaction for the copy)
    response = curator_client.post(
        "/c/reviews",
        {"content_ids": [content_id], "verdict": "true_positive", "add_to_bank": "EXCH"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert BankContent.objects.filter(bank__name="EXCH").count() == 1
    assert RetroactionBatch.objects.count() == 2


def test_beat_sends_every_kind_of_lost_work_again(
    broker, rule_on_bank, runtime, matcher_client, curator_client, tmp_path
):
    # Given work created while the broker was down: a delivery, a retroaction batch, a new
    # exchange never fetched, content not yet in any index snapshot, an exchange report, a
    # submission to an exchange
    reported = make_exchange_content(api="sample", name="TP_ON", report_true_positive_enabled=True)
    RetroactionBatch.objects.all().delete()  # as if its own retroaction had run
    runtime.refresh()
    broker.down()
    response = curator_client.post(
        "/c/reviews", {"content_ids": [reported.pk], "verdict": "true_positive"}, format="json"
    )
    assert response.status_code == 201, response.content
    (report,) = ExchangeReport.objects.all()
    assert matcher_client.get("/m/lookup", {"signal": PDQ, "signal_type": "pdq"}).status_code == 200
    assert curator_client.post("/c/exchanges", {"bank": "EXCH", "api": "sample"}, format="json").status_code == 201
    response = curator_client.post("/c/bank/SEL/signal", {"video_md5": MD5}, format="json")
    assert response.status_code == 200
    review_services.retroaction_enqueue(content_ids=[response.json()["id"]])  # a second batch, outside a request
    assert RetroactionBatch.objects.count() == 2
    (tmp_path / "out.txt").write_text("")
    response = curator_client.post(
        "/c/exchanges",
        {"bank": "OUT", "api": "local_file", "api_json": {"filename": str(tmp_path / "out.txt")}},
        format="json",
    )
    assert response.status_code == 201, response.content
    response = curator_client.post(
        "/c/exchange/OUT/submit",
        {"signal_type": "video_md5", "signal_value": MD5, "status": "positive_class"},
        format="json",
    )
    assert response.status_code == 202, response.content
    submission_id = response.json()["submissions"][0]["id"]
    delivery = WebhookDelivery.objects.get()
    exchange = ExchangeConfig.objects.get(name="EXCH")
    # When the broker is back and beat runs its periodic tasks
    broker.up()
    assert broker.sent() == []
    counts = review_services.messages_enqueue_due(stale_after=timedelta(0))
    retro = review_services.retroaction_enqueue_due(stale_after=timedelta(0))
    exchange_fetch_all_task()
    index_build_all_task()
    # Then each lost task is on the broker again
    sent = broker.sent()
    assert counts == {"deliveries": 1, "reports": 1, "submissions": 1}
    assert retro == 2
    assert ("reviews.exchange_submit", [submission_id]) in sent
    assert ("reviews.deliver_webhook", [delivery.pk]) in sent
    assert ("reviews.report_review", [report.pk]) in sent
    batches = RetroactionBatch.objects.order_by("pk")
    for batch in batches:
        assert ("reviews.retroaction", [batch.content_ids, batch.pk]) in sent
    assert ("exchanges.fetch", [exchange.pk]) in sent
    assert ("matching.index_build", ["video_md5"]) in sent


def test_retroaction_batch_is_forgotten_once_replayed(broker, rule_on_bank):
    # Given a batch left by a lost message
    review_services.retroaction_enqueue(content_ids=[rule_on_bank.pk])
    batch = RetroactionBatch.objects.get()
    # When its task runs (twice: a duplicate message)
    review_services.retroaction_batch_run(content_ids=batch.content_ids, batch_id=batch.pk)
    review_services.retroaction_batch_run(content_ids=batch.content_ids, batch_id=batch.pk)
    # Then the batch is gone and beat has nothing left to send
    assert not RetroactionBatch.objects.exists()
    assert review_services.retroaction_enqueue_due(stale_after=timedelta(0)) == 0


def test_a_second_send_of_a_batch_while_a_run_holds_it_does_nothing(broker, rule_on_bank, monkeypatch):
    # Given a due batch whose first run is replaying it
    review_services.retroaction_enqueue(content_ids=[rule_on_bank.pk])
    RetroactionBatch.objects.update(run_after=timezone.now())
    batch = RetroactionBatch.objects.get()
    replays, second = [], []
    real_run = retroaction_module.retroaction_run

    def run_with_a_duplicate_arriving(*, content_ids):
        replays.append(content_ids)
        if not second:  # meanwhile, beat's copy of the message reaches another worker
            second.append(retroaction_module.retroaction_batch_run(content_ids=content_ids, batch_id=batch.pk))
        return real_run(content_ids=content_ids)

    monkeypatch.setattr(retroaction_module, "retroaction_run", run_with_a_duplicate_arriving)
    # When the first run goes on
    retroaction_module.retroaction_batch_run(content_ids=batch.content_ids, batch_id=batch.pk)
    # Then the copy did nothing: one replay, and the batch is forgotten
    assert second == [0]
    assert replays == [batch.content_ids]
    assert not RetroactionBatch.objects.exists()


def test_beat_sends_a_lost_batch_again_once_not_every_minute(broker):
    # Given a batch whose message was lost, long due
    review_services.retroaction_enqueue(content_ids=[1, 2])
    broker.up()  # empties the queue: the message is lost
    RetroactionBatch.objects.update(run_after=timezone.now() - timedelta(minutes=10))
    batch = RetroactionBatch.objects.get()
    # When beat runs twice, a minute apart, before a worker takes the message
    assert review_services.retroaction_enqueue_due() == 1
    assert review_services.retroaction_enqueue_due() == 0
    # Then one copy is on the broker, and the batch is still there for it
    assert broker.sent().count(("reviews.retroaction", [batch.content_ids, batch.pk])) == 1
    assert RetroactionBatch.objects.filter(pk=batch.pk).exists()


def test_a_failed_send_is_logged_and_pauses_further_sends(broker, settings, caplog):
    from reviews.tasks import retroaction_task

    settings.OMM_ENQUEUE_PAUSE_SECONDS = 60
    broker.down()
    assert lib_tasks.enqueue(retroaction_task, [1], 1) is False
    assert lib_tasks.enqueue(retroaction_task, [2], 2) is False
    messages = [r.getMessage() for r in caplog.records if r.name == "omm_project.lib.tasks"]
    assert "could not enqueue reviews.retroaction" in messages[0] and "Connection refused" in messages[0]
    assert "left reviews.retroaction([2], 2) for beat" in messages[1]


def test_every_task_send_goes_through_the_one_helper():
    # A direct .delay()/apply_async()/delay_on_commit() in app code could raise into a request
    # when the broker is down; omm_project/lib/tasks.py is the only place that sends.
    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"\.(delay|apply_async|delay_on_commit|apply_async_on_commit|send_task)\b")
    offenders = []
    for path in root.rglob("*.py"):
        relative = path.relative_to(root).as_posix()
        if relative.startswith((".venv/", "tests/", "bench/")) or relative == "omm_project/lib/tasks.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == []
