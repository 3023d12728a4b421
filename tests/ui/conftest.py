"""
UI fixtures: users in each UI group, and a headless chromium (Debian's chromium and
chromium-driver, driven by selenium) that saves a screenshot of every page a test visits.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from banks.models import BankContent
from reviews import services
from reviews.models import Case
from tests.builders import PDQ
from tests.hashing.conftest import MediaServer

PASSWORD = "a-test-password-1"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
IMPLICIT_WAIT_SECONDS = 5  # how long a find waits for its element to appear


def make_user(username: str, groups: list[str]) -> User:
    """An active user with a usable password, in `groups` (created if a flush removed them)."""
    user = User.objects.create_user(username=username, password=PASSWORD)
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


def make_case(contents: list[BankContent], *, content_id: str = "post-1", uri: str = "", distance: int = 0) -> Case:
    """The case a lookup of `content_id` matching `contents` opens or joins (the match log's service)."""
    services.match_log_record(
        signal_type="pdq",
        signal_value=PDQ,
        hits=[
            services.MatchHit(content_id=c.pk, bank_id=c.bank_id, bank_name=c.bank.name, distance=distance)
            for c in contents
        ],
        platform_content_id=content_id,
        content_uri=uri,
    )
    return Case.objects.filter(platform_content_id=content_id).latest("pk")


def png_bytes(size: tuple[int, int] = (1200, 900)) -> bytes:
    """A colourful PNG (a gradient with a red square) to serve as submitted or banked media."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    image.paste((200, 30, 30), (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def image_server() -> Iterator[MediaServer]:
    """A local server of media for previews: /photo.png is an image (reaching it needs allow_loopback)."""
    media = MediaServer()
    media.add_bytes("/photo.png", png_bytes(), "image/png")
    media.server.start()
    yield media
    media.server.stop()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory) -> Path:
    """Where browser tests save their screenshots: OMM_SCREENSHOT_DIR, else under pytest's tmp."""
    configured = os.environ.get("OMM_SCREENSHOT_DIR", "")
    directory = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    _screenshot_dirs.append(directory)
    return directory


_screenshot_dirs: list[Path] = []


def pytest_terminal_summary(terminalreporter) -> None:
    """Say where the screenshots are, at the end of the run (fixture output is captured)."""
    for directory in _screenshot_dirs:
        terminalreporter.write_line(f"omm: browser screenshots in {directory}")


class Browser:
    """A selenium driver on the live server, saving a numbered PNG after each step it is told of."""

    def __init__(self, driver, base_url: str, directory: Path, prefix: str) -> None:
        self.driver = driver
        self.base_url = base_url
        self.directory = directory
        self.prefix = prefix
        self.shots: list[Path] = []

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def shot(self, name: str) -> Path:
        path = self.directory / f"{self.prefix}-{len(self.shots) + 1:02d}-{name}.png"
        assert self.driver.save_screenshot(str(path)), f"no screenshot saved at {path}"
        self.shots.append(path)
        return path

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def absent(self, css: str) -> bool:
        """No element matches `css` now (without the implicit wait for one to appear)."""
        self.driver.implicitly_wait(0)
        try:
            return not self.find_all(css)
        finally:
            self.driver.implicitly_wait(IMPLICIT_WAIT_SECONDS)

    def click_to_load(self, css: str) -> None:
        """Click what loads a new page (a link, a form's submit) and wait until the old page is
        gone, so what is read next is the new page's (selenium does not await a click's load)."""
        old = self.driver.find_element(By.TAG_NAME, "html")
        self.find(css).click()

        def old_page_gone(driver) -> bool:
            try:
                old.is_enabled()
            except StaleElementReferenceException:
                return True
            except WebDriverException as exc:
                # Chromium sometimes answers a node of a replaced page with this instead of "stale".
                if "does not belong to the document" in str(exc):
                    return True
                raise
            return False

        WebDriverWait(self.driver, IMPLICIT_WAIT_SECONDS).until(old_page_gone)

    def wait_for_text(self, css: str, text: str) -> None:
        """Wait until the element at `css` contains `text` (a click's page load is not awaited)."""
        WebDriverWait(self.driver, IMPLICIT_WAIT_SECONDS).until(
            expected_conditions.text_to_be_present_in_element((By.CSS_SELECTOR, css), text)
        )

    def wait_for_class(self, css: str, name: str) -> None:
        """Wait until the element at `css` has the class `name` (a script adds it when done)."""
        WebDriverWait(self.driver, IMPLICIT_WAIT_SECONDS).until(
            lambda driver: name in (driver.find_element(By.CSS_SELECTOR, css).get_attribute("class") or "").split()
        )

    def table_rows(self, css: str) -> list[list[str]]:
        """The text of each body cell of the table at `css`, row by row."""
        rows = self.find_all(f"{css} tbody tr")
        return [[cell.text for cell in row.find_elements(By.CSS_SELECTOR, "td")] for row in rows]


@pytest.fixture
def browser(live_server, screenshot_dir, request):
    """Headless chromium on pytest-django's live server; skipped where chromium is not installed."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"{CHROMIUM} and {CHROMEDRIVER} are needed (scripts/test.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1200"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(IMPLICIT_WAIT_SECONDS)
    try:
        yield Browser(driver, live_server.url, screenshot_dir, request.node.name)
    finally:
        driver.quit()
