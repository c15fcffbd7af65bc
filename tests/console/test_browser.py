"""The console in a real headless Chromium (Debian's, driven by Playwright's own driver).

Signs in, creates a team, a user and a key, sends traffic through the gateway with the key,
sees the spend and the request, follows it to its detail and its session, sets a budget,
revokes the key and sees the next request refused. Every page is saved as a screenshot under
artifacts/console/ (wide and phone-sized) and checked to be more than a blank page.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.conftest import Stack
from tests.console.conftest import ADMIN_KEY

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "console"
# Offline and quiet: no first-run, sync, update or field-trial traffic from the browser.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SESSION_ID = "0b5e8a52-console-browser-test"
MSG = [{"role": "user", "content": "Hello from the console test"}]


def _browser_or_skip() -> None:
    missing = not CHROMIUM.exists()
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = True
    if missing:
        reason = (
            "needs /usr/bin/chromium and playwright (scripts/install-chromium.sh, pip install -e '.[dev]')"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[Any]:
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


def assert_not_blank(path: Path) -> None:
    """A screenshot with real content: many colours, and no single colour covering nearly all of it."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        width, height = rgb.size
        colours = rgb.getcolors(maxcolors=width * height) or []
    assert width > 300 and height > 300, (path, rgb.size)
    assert len(colours) > 16, f"{path}: only {len(colours)} colours"
    commonest = max(n for n, _ in colours)
    assert commonest < 0.97 * width * height, f"{path}: one colour covers {commonest / (width * height):.0%}"


class Shots:
    """Screenshots of the pages, checked as they are taken."""

    def __init__(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.taken: list[Path] = []

    def __call__(self, page: Any, name: str) -> None:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        assert_not_blank(path)
        self.taken.append(path)


def _until(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def _call(stack: Stack, key: str) -> anthropic.types.Message:
    client = anthropic.Anthropic(
        base_url=stack.url,
        api_key=key,
        max_retries=0,
        default_headers={"x-claude-code-session-id": SESSION_ID},
    )
    return client.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MSG)


def test_sign_in_create_key_traffic_revoke(console: Stack, browser: Any) -> None:
    shots = Shots()
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the confirm() before revoking
    base = console.url

    # Nothing without signing in: the overview sends us to the sign-in form.
    page.goto(f"{base}/ui/overview")
    assert "/ui/login" in page.url
    shots(page, "01-login")
    page.fill("input[name=key]", "not-the-key")
    page.click("button[type=submit]")
    assert "Wrong key" in page.inner_text("main")
    page.fill("input[name=key]", ADMIN_KEY)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/ui/overview")

    # A team and a user to own the key.
    page.goto(f"{base}/ui/teams")
    page.fill("#create input[name=name]", "platform")
    page.click("#create button[type=submit]")
    page.wait_for_url("**/ui/teams/team_*")
    team_url = page.url.split("?")[0]
    page.goto(f"{base}/ui/users")
    page.fill("#create input[name=name]", "ada")
    page.fill("#create input[name=email]", "ada@example.com")
    page.select_option("#create select[name=team_id]", label="platform")
    page.click("#create button[type=submit]")
    page.wait_for_url("**/ui/users/user_*")

    # Create a key on the keys page; its secret is shown once.
    page.goto(f"{base}/ui/keys")
    page.fill("#create-key input[name=name]", "browser-key")
    page.select_option("#create-key select[name=user_id]", label="ada")
    page.select_option("#create-key select[name=team_id]", label="platform")
    page.check("#create-key input[name=log_bodies]")
    page.click("#create-key button[type=submit]")
    secret = page.inner_text("#new-key").strip()
    assert secret.startswith("cg-") or len(secret) > 20, secret
    shots(page, "03-keys-created")
    page.goto(f"{base}/ui/keys")
    assert secret not in page.content()  # never shown again

    # Traffic through the gateway with the new key.
    for _ in range(2):
        answer = _call(console, secret)
        assert answer.content[0].type == "text"

    # The spend and the request appear.
    def spend_shown() -> bool:
        page.goto(f"{base}/ui/overview?range=24h&by=team")
        return page.inner_text("#stat-spend strong") not in ("$0", "—")

    _until(spend_shown, "the overview to show the spend")
    assert page.inner_text("#stat-requests strong") == "2"
    assert "platform" in page.inner_text("#spend-chart")
    shots(page, "02-overview")
    page.goto(f"{base}/ui/overview?range=30d&by=model")
    assert "claude-sonnet-4-6" in page.inner_text("#spend-chart")

    def request_listed() -> bool:
        page.goto(f"{base}/ui/logs?since=24h")
        return page.locator("#log-list a.request").count() == 2

    _until(request_listed, "the logs to list both requests")
    assert "claude-sonnet-4-6" in page.inner_text("#log-list")
    shots(page, "04-logs")
    page.locator("#log-list a.request").first.click()
    page.wait_for_url("**/ui/logs/req_*")
    assert "Hello from the console test" in page.inner_text("#bodies")
    assert secret not in page.content()  # the key is redacted from the kept headers
    shots(page, "05-log-detail")
    page.click(f"a[href='/ui/sessions/{SESSION_ID}']")
    page.wait_for_url(f"**/ui/sessions/{SESSION_ID}")
    assert page.locator("li.turn").count() == 2
    assert page.locator(".bubble.assistant").count() == 2
    shots(page, "06-session")

    # A budget for the team, its use drawn as a bar.
    page.goto(f"{base}/ui/budgets")
    page.select_option("#budget-form select[name=owner]", label="team platform")
    page.fill("#budget-form input[name=amount_usd]", "5")
    page.click("#budget-form button[type=submit]")
    page.wait_for_url("**/ui/budgets?done=budget")
    assert page.locator("#budget-list svg.meter").count() == 1
    assert "of $5.00" in page.inner_text("#budget-list")
    shots(page, "07-budgets")

    page.goto(f"{base}/ui/users")
    shots(page, "08-users")
    page.goto(f"{base}/ui/teams")
    shots(page, "09-teams")
    page.goto(team_url)
    assert "browser-key" in page.inner_text("#keys")
    shots(page, "10-team-detail")
    page.goto(f"{base}/ui/deployments")
    assert page.locator("#live table").count() == 1
    shots(page, "11-deployments")

    # Revoke the key in the console; the gateway refuses it from then on.
    page.goto(f"{base}/ui/keys")
    row = page.locator("tr", has_text="browser-key")
    row.locator("button", has_text="Revoke").click()
    page.wait_for_url("**/ui/keys?done=revoked")
    assert "revoked" in page.inner_text("main")
    shots(page, "12-keys-revoked")

    def refused() -> bool:
        try:
            _call(console, secret)
        except anthropic.AuthenticationError:
            return True
        return False

    _until(refused, "the gateway to refuse the revoked key", timeout=10)

    # Phone-sized.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    phone.add_cookies(context.cookies())
    small = phone.new_page()
    for name, path in (
        ("overview", "/ui/overview?range=24h"),
        ("keys", "/ui/keys?include_revoked=true"),
        ("logs", "/ui/logs"),
    ):
        small.goto(base + path)
        # Nothing wider than the screen but the tables' own scrolling boxes.
        assert small.evaluate("document.documentElement.scrollWidth") <= 390 + 1, name
        shots(small, f"13-phone-{name}")
    phone.close()

    # Signing out ends the session: the console is closed again.
    page.goto(f"{base}/ui/overview")
    page.click("header .logout button")
    page.wait_for_url("**/ui/login?done=signed-out")
    page.goto(f"{base}/ui/keys")
    assert "/ui/login" in page.url
    context.close()
    assert len(shots.taken) >= 14
