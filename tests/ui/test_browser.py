"""
The UI in a real browser (headless chromium through selenium, on pytest-django's live server),
with a screenshot of every page visited (see the `browser` fixture for where they go): a reviewer
logs in, pastes a banked hash into the match debug page and sees the content with its distance,
uploads a reference photo and sees its hash and quality, logs out; a reviewer opens the queue,
opens the top case, reveals its media previews, gives a verdict per match and sees the case
closed with its events; a reviewer reads the dashboard's charts and tables; a curator releases
a quarantined hash and sees its state change; a reviewer follows a case to
its cluster and gives the whole cluster one verdict.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from exchanges.services import exchange_create
from reviews.models import Case, Cluster, ExchangeReport, MatchLog
from tests.builders import PDQ, PDQ_X, make_bank, make_content
from tests.hashing.reference_data import NO_DATA, PDQ_DATA_DIR, expected_pdq_rows
from tests.reviews.conftest import make_exchange_content
from tests.ui.conftest import PASSWORD, make_case, make_user
from tests.ui.test_quarantine_page import make_quarantine
from ui.groups import CURATORS, REVIEWERS

pytestmark = pytest.mark.django_db(transaction=True)

PHOTO = "bridge-mods/blur-a-little.jpg"  # near the reference photo whose PDQ is `PDQ`


def _distance(left: str, right: str) -> int:
    return bin(int(left, 16) ^ int(right, 16)).count("1")


def test_reviewer_debugs_a_match(browser, runtime):
    # given a reviewer and a bank holding the reference photo's PDQ
    make_user("rita", [REVIEWERS])
    bank = make_bank("CSAM_BANK", labels=["csam"])
    content = make_content(bank, {"pdq": PDQ}, labels=["reviewed"])
    runtime.refresh()  # the index loaded (a page never waits for a load: it answers 503 until then)

    # when: the reviewer opens the match debug page, anonymous; then the login page
    browser.open("/ui/match/")
    assert "/ui/login/" in browser.driver.current_url
    browser.shot("login")
    browser.find("input[name=username]").send_keys("rita")
    browser.find("input[name=password]").send_keys(PASSWORD)
    browser.click_to_load("#login")

    # then: back on the match debug page, logged in
    assert browser.driver.current_url.endswith("/ui/match/")
    assert browser.find("#user").text == "rita"
    assert browser.find("input[name=max_distance]").get_attribute("value") == "31"
    browser.shot("match-debug")

    # when: the banked hash is pasted; then the content is listed with its bank, distance and labels
    browser.find("input[name=hash]").send_keys(PDQ)
    browser.click_to_load("#search")
    assert browser.find("#result-hash").text == PDQ
    assert "pasted" in browser.find("#result-quality").text
    assert browser.table_rows("#matches") == [[str(content.pk), "CSAM_BANK", "0", "reviewed", "enabled", "—"]]
    browser.shot("hash-matches")

    # when: a bad hash is pasted; then a form error, no result
    field = browser.find("input[name=hash]")
    field.clear()
    field.send_keys("not-a-hash")
    browser.click_to_load("#search")
    assert "Not a PDQ hash" in browser.find(".field-error").text
    assert browser.absent("#result")
    browser.shot("bad-hash")

    # when: a reference photo is uploaded; then its hash, its quality, and the banked content near it
    rows = {path: (pdq, quality) for path, pdq, quality in expected_pdq_rows()}
    if PHOTO not in rows:
        pytest.skip(NO_DATA)
    expected_pdq, expected_quality = rows[PHOTO]
    browser.find("input[name=hash]").clear()
    browser.find("input[name=photo]").send_keys(str(PDQ_DATA_DIR / PHOTO))
    browser.click_to_load("#search")
    assert browser.find("#result-hash").text == expected_pdq
    assert browser.find("#result-quality").text == str(expected_quality)
    assert browser.find("#result-photo").text == PHOTO.rsplit("/", 1)[1]
    distance = _distance(expected_pdq, PDQ)
    assert [row[:3] for row in browser.table_rows("#matches")] == [[str(content.pk), "CSAM_BANK", str(distance)]]
    browser.shot("photo-matches")

    # when: the reviewer logs out; then the login page, and the pages are closed again
    browser.click_to_load("#logout")
    assert "/ui/login/" in browser.driver.current_url
    browser.shot("logged-out")
    browser.open("/ui/match/")
    assert "/ui/login/" in browser.driver.current_url
    assert len(browser.shots) == 6


def test_reviewer_works_the_queue(browser, image_server, settings, allow_loopback):
    # given previews on, a reviewer, a two-match case (its submission and one bank content
    # have media on a local server) and a one-match case opened before it
    settings.OMM_UI_PREVIEW = True
    photo = image_server.url("/photo.png")
    make_user("rita", [REVIEWERS])
    csam = make_content(
        make_bank("CSAM_BANK", labels=["csam"]), {"pdq": PDQ}, labels=["reviewed"], original_media_uri=photo
    )
    # the second match's content came from an exchange that wants false positives reported
    terror = make_exchange_content(
        api="sample", name="TERROR_EX", signals={"pdq": PDQ_X}, report_false_positive_enabled=True
    )
    small = make_case([csam], content_id="post-small")
    top = make_case([csam, terror], content_id="post-top", uri=photo, distance=4)

    # when the reviewer logs in to the queue; then the two cases, the two-match one first
    browser.open("/ui/queue/")
    browser.find("input[name=username]").send_keys("rita")
    browser.find("input[name=password]").send_keys(PASSWORD)
    browser.click_to_load("#login")
    rows = browser.table_rows("#cases")
    assert [row[:6] for row in rows] == [  # case, content id, state, matches, severity, priority
        [str(top.pk), "post-top", "Open", "2", "0", "2"],
        [str(small.pk), "post-small", "Open", "1", "0", "1"],
    ]
    browser.shot("queue")

    # when the top case is opened; then its submission and its two matches side by side, the
    # submission's and the banked content's previews blurred
    browser.click_to_load(f"#cases a[href='/ui/case/{top.pk}/']")
    assert browser.find("#case-content-id").text == "post-top"
    assert photo in browser.find("#case-uri").text
    assert len(browser.find_all("article.match.undecided")) == 2
    first, second = top.matches.order_by("pk")
    previews = ["#case-preview", f"#content-preview-{first.pk}"]
    for preview in previews:
        browser.wait_for_class(f"{preview}", "loaded")
        assert "concealed" in browser.find(f"{preview} img").get_attribute("class")
    assert browser.absent(f"#content-preview-{second.pk}")  # that content has no media URI
    assert browser.driver.execute_script("return document.querySelector('#case-preview img').naturalWidth") == 800
    browser.shot("case")

    # when "r" is pressed; then every preview is revealed; a click on one blurs it again
    browser.find("body").send_keys("r")
    for preview in previews:
        assert "concealed" not in browser.find(f"{preview} img").get_attribute("class")
    assert "Revealed" in browser.find("#case-preview .preview-state").text
    browser.shot("case-preview-revealed")
    browser.find("#case-preview img").click()
    assert "concealed" in browser.find("#case-preview img").get_attribute("class")

    # when: "t" chooses true positive for the first match (the page's shortcut), a click false
    # positive for the second, and the verdicts are recorded
    browser.find("body").send_keys("t")
    assert browser.find(f"input[name=match-{first.pk}][value=true_positive]").is_selected()
    browser.find(f"input[name=match-{second.pk}][value=false_positive]").click()
    browser.click_to_load("#record")

    # then the case is closed, true positive, with its events
    browser.wait_for_text("#case-state", "Closed")
    assert browser.find("#case-verdict").text == "True positive (harmful)"
    assert browser.absent("article.match.undecided")
    events = browser.table_rows("#events")
    assert [row[1:3] for row in events] == [["rita", "Verdicts given"], ["rita", "Closed"]]
    browser.shot("case-closed")
    # and the false positive's write-back to its exchange is recorded (sent by a worker)
    report = ExchangeReport.objects.get()
    assert (report.kind, report.content_id, report.exchange_name) == ("false_positive", terror.pk, "TERROR_EX")

    # and the queue now holds the other case only
    browser.click_to_load("nav a[href='/ui/queue/']")
    assert [row[0] for row in browser.table_rows("#cases")] == [str(small.pk)]
    assert len(browser.shots) == 4


def test_reviewer_reads_the_dashboard(browser):
    # given matches and cases in two banks over the last days (case i opened i days ago), and an
    # exchange never fetched yet
    make_user("rita", [REVIEWERS])
    csam = make_content(make_bank("CSAM_BANK"), {"pdq": PDQ})
    terror = make_content(make_bank("TERROR_BANK"), {"pdq": PDQ_X})
    for i in range(8):
        case = make_case([csam, terror] if i % 3 else [csam], content_id=f"post-{i}")
        opened = case.created_at - timedelta(days=i)
        Case.objects.filter(pk=case.pk).update(created_at=opened)
        MatchLog.objects.filter(platform_content_id=case.platform_content_id).update(created_at=opened)
    exchange_create(name="SAMPLE", api="sample", fetch_now=False)

    # when the reviewer logs in and opens the dashboard from the navigation
    browser.open("/ui/")
    browser.find("input[name=username]").send_keys("rita")
    browser.find("input[name=password]").send_keys(PASSWORD)
    browser.click_to_load("#login")
    browser.click_to_load("nav a[href='/ui/dashboard/']")

    # then Chart.js drew both charts, one series per bank, from the page's data
    for canvas in ("matches-chart", "cases-chart"):
        labels = browser.driver.execute_script(
            "var c = Chart.getChart(arguments[0]); return c && c.data.datasets.map(d => d.label);", canvas
        )
        assert labels == ["CSAM_BANK", "TERROR_BANK"], canvas
        assert browser.find(f"#{canvas}").size["height"] > 100
    assert browser.find("#matches-total").text == "13"
    assert browser.table_rows("#open-by-priority") == [["2", "5"], ["1", "3"]]
    assert browser.table_rows("#exchanges")[0][:3] == ["SAMPLE", "sample", "never fetched"]
    assert [row[0] for row in browser.table_rows("#indexes")] == ["pdq", "video_md5"]
    browser.driver.set_window_size(1280, 1500)  # the whole page in the screenshot
    browser.shot("dashboard")


def test_curator_releases_a_quarantined_hash(browser):
    # given a curator and two contents quarantined as noisy
    make_user("cora", [CURATORS])
    older = make_quarantine("STOCK_IMAGES")
    noisy = make_quarantine("MEMES", content_ids=("post-1", "post-2", "post-3"))

    # when the curator logs in to the quarantine page; then both, the newest first, undecided
    browser.open("/ui/quarantine/")
    browser.find("input[name=username]").send_keys("cora")
    browser.find("input[name=password]").send_keys(PASSWORD)
    browser.click_to_load("#login")
    rows = browser.table_rows("#quarantines")
    assert [row[:3] + row[5:6] for row in rows] == [
        ["MEMES", str(noisy.matched_content_id), "1", "Quarantined"],
        ["STOCK_IMAGES", str(older.matched_content_id), "1", "Quarantined"],
    ]
    assert len(browser.find_all("#quarantines button.release")) == 2
    browser.shot("quarantine")

    # when the MEMES content is released
    browser.click_to_load(f"#quarantine-{noisy.pk} button.release")

    # then its state is released by cora, its buttons gone; the other still waits
    browser.wait_for_text(f"#quarantine-{noisy.pk} td.decision-state", "Released")
    assert "cora" in browser.find(f"#quarantine-{noisy.pk}").text
    assert browser.absent(f"#quarantine-{noisy.pk} button")
    assert len(browser.find_all(f"#quarantine-{older.pk} button")) == 2
    browser.shot("quarantine-released")

    # and its three held matches joined cases, in the queue
    browser.click_to_load("nav a[href='/ui/queue/']")
    assert {row[1] for row in browser.table_rows("#cases")} == {"post-1", "post-2", "post-3"}
    browser.shot("queue-after-release")
    assert len(browser.shots) == 3


def test_reviewer_decides_a_whole_cluster(browser):
    # given a reviewer and three open cases of one cluster (the same meme posted thrice), plus one elsewhere
    make_user("cleo", [REVIEWERS])
    meme = make_content(make_bank("MEME_BANK"), {"pdq": PDQ})
    now = timezone.now()
    cluster = Cluster.objects.create(
        signal_type="pdq",
        representative_value=PDQ,
        first_seen_at=now,
        last_seen_at=now,
        submission_count=3,
        content_id_count=3,
        last_hour_count=3,
        hourly_counts={now.strftime("%Y-%m-%dT%H"): 3},
    )
    cases = [make_case([meme], content_id=f"post-{i}") for i in range(3)]
    Case.objects.filter(pk__in=[c.pk for c in cases]).update(cluster=cluster, cluster_size=3)
    elsewhere = make_case([meme], content_id="post-elsewhere")

    # when the reviewer opens one of the cases; then it shows its cluster
    browser.open(f"/ui/case/{cases[0].pk}/")
    browser.find("input[name=username]").send_keys("cleo")
    browser.find("input[name=password]").send_keys(PASSWORD)
    browser.click_to_load("#login")
    assert "3 submissions" in browser.find("#case-cluster").text
    browser.shot("case-with-cluster")

    # when they follow it; then the cluster's counts, growth and its three open cases
    browser.click_to_load("#case-cluster a")
    assert browser.find("#cluster-size").text == "3"
    assert [row[0] for row in browser.table_rows("#growth")] == [now.strftime("%Y-%m-%dT%H") + ":00"]
    assert sorted(row[2] for row in browser.table_rows("#cluster-cases")) == ["Open"] * 3
    browser.shot("cluster")

    # when they give the whole cluster a false positive verdict
    browser.find("#note").send_keys("a meme, not abuse")
    browser.click_to_load("#cluster-false")

    # then every case of the cluster is closed, false positive; the other case is untouched
    assert "Verdict given to 3 case(s)" in browser.find("#notices").text
    rows = browser.table_rows("#cluster-cases")
    closed = ("Closed (every match has a verdict)", "False positive (not harmful)")
    assert sorted((row[2], row[3]) for row in rows) == [closed] * 3
    assert browser.absent("#cluster-verdict-form")
    browser.shot("cluster-decided")
    for case in cases:
        case.refresh_from_db()
        assert case.state == "closed" and case.events.get(kind="verdict").detail["cluster"] == cluster.pk
    elsewhere.refresh_from_db()
    assert elsewhere.state == "open"
