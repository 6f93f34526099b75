"""The report page on hand-made data: sections, escaping, the no-decision page, no fetches."""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser

from proxy.report.data import SpendSeries
from proxy.report.page import LiveLinks, render_report
from proxy.report.svg import format_usd, linear_ticks, log_ticks
from tests.proxy.report.factories import POLICY, chart, no_savings, report, row, stored

HOSTILE = '<script>alert("pwned")</script>'


class Elements(HTMLParser):
    """Collect every start tag with its attributes, and the page's text."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def named(self, tag: str, css_class: str | None = None) -> list[dict[str, str | None]]:
        return [
            attrs
            for name, attrs in self.tags
            if name == tag
            and (css_class is None or css_class in (attrs.get("class") or "").split())
        ]

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def test_page_has_every_section() -> None:
    page = Elements(render_report(report()))

    ids = {attrs.get("id") for attrs in page.named("section")}
    assert ids == {"latest", "chart", "candidates", "spend", "history", "settings"}
    assert len(page.named("g", "candidate")) == 5
    assert len(page.named("g", "bucket")) == 6
    assert "Policy support-bot" in page.all_text
    assert "generated 2025-03-01 12:00:00 UTC" in page.all_text


def test_page_latest_decision_and_reason() -> None:
    page = Elements(render_report(report()))

    text = page.all_text
    assert "Decision 7 at 2025-03-01 09:00:00 UTC: big → small" in text
    assert "small is the cheapest eligible candidate and costs 80% less" in text


def test_candidate_table_one_row_each() -> None:
    page = Elements(render_report(report()))

    rows = [attrs.get("data-model") for attrs in page.named("tr") if attrs.get("data-model")]
    assert rows == ["local-llama", "small", "medium", "fast-but-slow", "big"]
    assert "p95 latency 5200 ms > 4000 ms" in page.all_text


def test_history_newest_first_with_applied() -> None:
    history = (
        stored(9, "big", "held back by a pin", applied=False),
        stored(7, "small", "cheaper"),
        stored(3, "big", "first"),
    )

    page = Elements(render_report(report(history=history)))

    decisions = [attrs.get("data-decision") for attrs in page.named("tr")]
    assert [d for d in decisions if d] == ["9", "7", "3"]
    assert "The 3 newest decisions, newest first." in page.all_text
    assert "held back by a pin" in page.all_text


def test_chart_note_when_latest_not_evaluation() -> None:
    pin = stored(
        8, "big", "pinned by operator", mode="pinned", source="operator", previous_model="small"
    )
    page = Elements(render_report(report(history=(pin, stored(7, "small", "cheaper")))))

    assert "made by an operator" in page.all_text
    assert "are those of decision 7, the newest one made by an evaluation" in page.all_text


def test_spend_summary_and_method() -> None:
    page = Elements(render_report(report()))

    text = page.all_text
    assert "Saved $5.4000 (80%) to date over 600 requests" in text
    assert "spent $1.3500, the reference model would have cost $6.7500" in text
    assert "Method: estimate: from decision 7's candidate table." in text


def test_no_decision_page() -> None:
    empty = report(
        chart=None,
        history=(),
        current_decision_id=None,
        current_model="big",
        spend=SpendSeries("hour", ()),
        savings=no_savings(),
    )

    html = render_report(empty)

    page = Elements(html)
    assert "No decision yet" in page.all_text
    assert f"pareto eval run --policy {POLICY}" in page.all_text
    assert "routes to its reference model big" in page.all_text
    assert "so there is no chart" in page.all_text
    assert "No request of this policy is recorded yet." in page.all_text
    assert page.named("svg") == []
    assert page.named("table") == []


def test_no_decision_without_settings() -> None:
    empty = report(
        chart=None,
        history=(),
        settings=None,
        reference_model=None,
        current_model=None,
        current_decision_id=None,
        candidates=(),
        spend=SpendSeries("hour", ()),
        savings=no_savings(),
    )

    text = Elements(render_report(empty)).all_text

    assert "No route is known yet" in text
    assert "No settings are known" in text


def test_database_strings_escaped() -> None:
    rows = (row("big", 0.01, 8.7), row(HOSTILE, 0.002, 8.6, reasons=(HOSTILE,)))
    hostile_chart = chart(rows, chosen=HOSTILE, reason=HOSTILE)
    hostile = report(
        policy=HOSTILE,
        chart=hostile_chart,
        current_model=HOSTILE,
        history=(stored(7, HOSTILE, HOSTILE, previous_model=HOSTILE, mode=HOSTILE),),
        reference_model=HOSTILE,
        candidates=(HOSTILE,),
        problems=(HOSTILE,),
    )

    html = render_report(hostile, LiveLinks("/ui", "/ui/logout"))

    assert "<script" not in html
    assert "&lt;script&gt;" in html
    page = Elements(html)
    assert [tag for tag, _ in page.tags if tag == "script"] == []
    models = {attrs.get("data-model") for attrs in page.named("g", "candidate")}
    assert models == {"big", HOSTILE}
    assert page.all_text.count(HOSTILE) >= 8


def test_page_fetches_nothing() -> None:
    html = render_report(report())

    urls = set(re.findall(r"(?:https?:)?//[\w.-]+[^\s\"'<>)]*", html))
    assert urls == {"http://www.w3.org/2000/svg"}
    page = Elements(html)
    assert page.named("script") == []
    assert page.named("link") == []
    assert page.named("img") == []
    policy = [attrs for attrs in page.named("meta") if attrs.get("http-equiv")]
    assert policy[0]["content"] is not None
    assert "default-src 'none'" in policy[0]["content"]


def test_live_page_navigation() -> None:
    live = Elements(render_report(report(), LiveLinks("/ui", "/ui/logout")))
    written = Elements(render_report(report()))

    assert [attrs.get("action") for attrs in live.named("form")] == ["/ui/logout"]
    assert {attrs.get("href") for attrs in live.named("a")} == {"/ui"}
    assert written.named("form") == []
    assert written.named("nav") == []


def test_live_page_without_master_key_has_no_logout() -> None:
    page = Elements(render_report(report(), LiveLinks("/ui", None)))

    assert page.named("form") == []


def test_operator_pin_in_header() -> None:
    text = Elements(render_report(report(operator_pin=True))).all_text

    assert "pinned by an operator" in text
    assert "mode auto" not in text.split("Latest decision")[0]


def test_unscored_candidate_in_table() -> None:
    rows = (row("big", 0.01, 8.7), row("new", 0.003, None, latency=None))

    page = Elements(render_report(report(chart=replace(chart(rows), chosen_model="big"))))

    assert "no scores" in page.all_text
    assert len(page.named("g", "candidate")) == 2


# Number formats and axis ticks


def test_format_usd() -> None:
    assert format_usd(0) == "$0"
    assert format_usd(0.00025) == "$0.00025"
    assert format_usd(0.00001) == "$0.00001"
    assert format_usd(0.012345) == "$0.0123"
    assert format_usd(1234.5) == "$1230"
    assert format_usd(-0.5) == "-$0.5"


def test_log_ticks_one_two_five() -> None:
    assert log_ticks(0.0003, 0.015) == [0.0005, 0.001, 0.002, 0.005, 0.01]
    assert log_ticks(0.00001, 10.0) == [0.00001, 0.0001, 0.001, 0.01, 0.1, 1.0, 10.0]


def test_linear_ticks_nice_steps() -> None:
    assert linear_ticks(0, 0.01, 5) == [0.0, 0.002, 0.004, 0.006, 0.008, 0.01]
    assert linear_ticks(0, 1.5, 4) == [0.0, 0.5, 1.0, 1.5]
