"""Fixtures for the console's browser tests.

The servers are started by the Rust end-to-end test
(`crates/lakehouse/tests/it/console.rs`), which passes:

- CONSOLE_URL: a `lakehouse serve` without auth;
- CONSOLE_AUTH_URL, CONSOLE_READ_TOKEN, CONSOLE_ADMIN_TOKEN: one with tokens;
- CONSOLE_ARTIFACTS: where screenshots and measurements go;
- CONSOLE_CHROMIUM: the browser (default /usr/bin/chromium).

Chromium is Debian's; Playwright only drives it (no browser download).
"""

import json
import os
import pathlib
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import sync_playwright

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run these tests through `cargo test -p lakehouse --test it console`")
    return value


@pytest.fixture(scope="session")
def artifacts():
    d = pathlib.Path(env("CONSOLE_ARTIFACTS"))
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=os.environ.get("CONSOLE_CHROMIUM", "/usr/bin/chromium"), args=ARGS
        )
        yield b
        b.close()


class Watch:
    """Records what must never happen on a page: dialogs, script errors, CSP violations."""

    def __init__(self, page):
        self.dialogs = []
        self.errors = []
        self.console_errors = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", self._console)

    def _dialog(self, d):
        self.dialogs.append(d.message)
        d.dismiss()

    def _console(self, msg):
        if msg.type == "error":
            self.console_errors.append(msg.text)

    def clean(self, allow_http_errors=True):
        assert not self.dialogs, f"a dialog opened: {self.dialogs}"
        assert not self.errors, f"script errors: {self.errors}"
        bad = [m for m in self.console_errors if not (allow_http_errors and "Failed to load resource" in m)]
        assert not bad, f"console errors: {bad}"


@pytest.fixture()
def page(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 820}, accept_downloads=True)
    pg = ctx.new_page()
    pg.watch = Watch(pg)
    yield pg
    ctx.close()


class Api:
    """Plain HTTP calls, for setting up data and for computing expected answers."""

    def __init__(self, base, token=None):
        self.base = base.rstrip("/")
        self.token = token

    def request(self, method, path, body=None, content_type="application/json"):
        data = None
        headers = {}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def json(self, method, path, body=None):
        status, raw = self.request(method, path, body)
        return status, json.loads(raw) if raw else None


@pytest.fixture(scope="session")
def open_url():
    return env("CONSOLE_URL").rstrip("/")


@pytest.fixture(scope="session")
def api(open_url):
    return Api(open_url)


@pytest.fixture(scope="session")
def auth_url():
    return env("CONSOLE_AUTH_URL").rstrip("/")


@pytest.fixture(scope="session")
def tokens():
    return {"read": env("CONSOLE_READ_TOKEN"), "admin": env("CONSOLE_ADMIN_TOKEN")}
