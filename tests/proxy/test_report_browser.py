"""The report in a real browser: the file `pareto report` writes, and /ui on a running gateway.

Both pages are opened in headless Chromium (Debian's `chromium` package, which `.ci/run`
installs). Each must render without console messages or page errors, fetch nothing beyond
itself, and draw one chart point per candidate of the decision. Screenshots are saved in the
test's temporary folder. Without /usr/bin/chromium the tests are skipped, except in CI (`CI`
set), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, sync_playwright
from sqlalchemy.engine import Engine
from sqlmodel import Session

from policies import PolicySettings, decide
from proxy.cli import main
from proxy.db import make_engine
from proxy.decisions import list_decisions, record_decision
from proxy.routes_ui import policy_path
from proxy.tables import RequestLog
from tests.conftest import GatewayFactory
from tests.gateway import MASTER_KEY, deployment
from tests.policies.factories import make_candidate

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
POLICY = "support-bot"
# The commands and pages never call a model, so nothing listens here.
API_BASE = "http://127.0.0.1:9/v1"
COSTS = {"big": 0.01, "medium": 0.006, "slow": 0.004, "small": 0.002, "local": 0.0}


def gateway_config() -> dict[str, Any]:
    return {
        "model_list": [deployment(model, f"{model}-model", API_BASE) for model in COSTS],
        "policies": {
            POLICY: {
                "reference": "big",
                "candidates": list(COSTS),
                "judge": "checks",
                "max_latency_p95_ms": 4000,
            }
        },
        "general_settings": {"master_key": MASTER_KEY},
    }


def evaluation(current: str | None, small_cases: int) -> Any:
    """Decide among five candidates: one below the floor, one over the latency ceiling."""
    candidates = [
        make_candidate("big", COSTS["big"], mean=8.7, latency=1500.0),
        make_candidate("medium", COSTS["medium"], mean=8.4, latency=1200.0),
        make_candidate("slow", COSTS["slow"], mean=8.8, latency=5200.0),
        make_candidate("small", COSTS["small"], mean=8.6, latency=900.0, cases=small_cases),
        make_candidate("local", COSTS["local"], mean=7.1, low=6.7, high=7.5, latency=2100.0),
    ]
    settings = PolicySettings(max_latency_p95_ms=4000)
    return decide(candidates, settings, reference_model="big", current_model=current)


def populate(engine: Engine) -> int:
    """Store two decisions (big, then small) and a day of requests. Return the candidate count."""
    first = evaluation(current=None, small_cases=12)
    record_decision(engine, POLICY, first, run_id=1)
    second = evaluation(current=first.chosen_model, small_cases=50)
    assert second.chosen_model == "small"
    record_decision(engine, POLICY, second, run_id=2)

    start = datetime.now(UTC) - timedelta(hours=30)
    with Session(engine) as session:
        for index in range(90):
            at = start + timedelta(minutes=20 * index)
            model = "small"
            if index < 45:
                model = "big"
            elif index % 9 == 0:
                model = "local"
            session.add(
                RequestLog(
                    request_id=f"browser-{index}",
                    created_at=at,
                    endpoint="chat",
                    requested_model=POLICY,
                    served_model=model,
                    status=200,
                    cost_usd=COSTS[model],
                    latency_ms=800.0,
                    policy=POLICY,
                )
            )
        session.commit()
    stored = list_decisions(engine, POLICY, limit=1)[0]
    return len(stored.candidates)


@dataclass
class PageLog:
    """Console messages, page errors and requests of one browser page."""

    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("request", self._on_request)

    def _on_console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text}")

    def _on_request(self, request: Request) -> None:
        self.requests.append(request.url)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        reason = f"Chromium is not installed at {CHROMIUM} (Debian package chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; .ci/run installs it.")
        pytest.skip(f"{reason}; install it with apt-get install chromium.")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


def assert_report_rendered(page: Page, log: PageLog, candidates: int) -> None:
    page.wait_for_load_state("load")
    assert log.console == []
    assert log.errors == []
    points = page.locator("svg.scatter g.candidate")
    assert points.count() == candidates
    assert page.locator("svg.scatter polyline.frontier").count() == 1
    assert page.locator("svg.scatter g.quality-floor").count() == 1
    assert page.locator("svg.scatter g.candidate.over-latency").count() == 1
    assert page.locator("svg.scatter g.candidate.chosen").get_attribute("data-model") == "small"
    assert page.locator("svg.spend g.bucket").count() >= 30
    assert page.locator("table.candidates tbody tr").count() == candidates
    assert page.locator("table.history tbody tr").count() == 2
    box = page.locator("svg.scatter").bounding_box()
    assert box is not None
    assert box["width"] > 600
    assert box["height"] > 300


def test_report_file_in_browser(
    browser: Browser,
    engine: Engine,
    sqlite_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    candidates = populate(engine)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(gateway_config()), encoding="utf-8")
    out = tmp_path / "report.html"
    os.environ["DATABASE_URL"] = sqlite_url
    try:
        code = main(["report", "--config", str(config), "--policy", POLICY, "--out", str(out)])
    finally:
        del os.environ["DATABASE_URL"]
    assert code == 0, capsys.readouterr().err

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    log = PageLog()
    log.attach(page)
    page.goto(out.as_uri())

    assert_report_rendered(page, log, candidates)
    assert log.requests == [out.as_uri()]
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000
    page.close()


def test_live_ui_in_browser(
    browser: Browser,
    engine: Engine,
    sqlite_url: str,
    start_gateway: GatewayFactory,
    tmp_path: Path,
) -> None:
    candidates = populate(engine)
    gateway = start_gateway(gateway_config(), sqlite_url)
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    log = PageLog()
    log.attach(page)

    page.goto(f"{gateway.base_url}/ui/login")
    page.fill("#key", MASTER_KEY)
    page.click("button[type=submit]")
    page.wait_for_url(f"{gateway.base_url}/ui")
    page.click(f"a[href='{policy_path(POLICY)}']")
    page.wait_for_url(f"{gateway.base_url}{policy_path(POLICY)}")

    assert_report_rendered(page, log, candidates)
    assert MASTER_KEY not in page.content()
    assert all(url.startswith(gateway.base_url + "/ui") for url in log.requests), log.requests
    cookies = context.cookies()
    assert len(cookies) == 1
    assert cookies[0]["httpOnly"] is True
    assert cookies[0]["sameSite"] == "Strict"
    assert MASTER_KEY not in cookies[0]["value"]
    page.screenshot(path=str(tmp_path / "ui.png"), full_page=True)
    assert (tmp_path / "ui.png").stat().st_size > 10_000
    context.close()
