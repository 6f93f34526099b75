"""The spend chart: one bucket group per hour or day, bar heights, readable time labels."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest

from proxy.report.data import SpendBucket, SpendSeries
from proxy.report.spend_chart import BOTTOM, render_spend_chart
from proxy.report.svg import text_width
from tests.proxy.report.factories import NOW, spend_series

SVG = "{http://www.w3.org/2000/svg}"


def buckets(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == "bucket"]


def test_one_group_per_bucket() -> None:
    root = ET.fromstring(render_spend_chart(spend_series(hours=6)))

    groups = buckets(root)
    assert len(groups) == 6
    assert groups[0].get("data-start") == (NOW - timedelta(hours=6)).isoformat()
    title = root.find(f"{SVG}title")
    assert title is not None and title.text == "Spend per hour"


def test_bar_heights_follow_amounts() -> None:
    series = SpendSeries(
        "day",
        (
            SpendBucket(NOW, 10, 1.0, 4.0),
            SpendBucket(NOW + timedelta(days=1), 0, 0.0, 0.0),
            SpendBucket(NOW + timedelta(days=2), 5, 2.0, 2.0),
        ),
    )

    groups = buckets(ET.fromstring(render_spend_chart(series)))

    heights = [[float(rect.get("height", "nan")) for rect in g.iter(f"{SVG}rect")] for g in groups]
    reference, spent = heights[0]
    assert reference == pytest.approx(4 * spent, rel=0.01)
    assert heights[1] == [0.0, 0.0]
    assert heights[2][0] == pytest.approx(heights[2][1])
    for group in groups:
        for rect in group.iter(f"{SVG}rect"):
            top = float(rect.get("y", "nan")) + float(rect.get("height", "nan"))
            assert top == pytest.approx(BOTTOM, abs=0.1)


def test_time_labels_do_not_overlap() -> None:
    root = ET.fromstring(render_spend_chart(spend_series(hours=48)))

    labels = [
        (float(text.get("x", "nan")), text.text or "")
        for text in root.iter(f"{SVG}text")
        if text.get("y") == str(BOTTOM + 18)
    ]
    assert 2 <= len(labels) <= 8
    for (x1, first), (x2, second) in itertools.pairwise(labels):
        assert x2 - x1 >= (text_width(first) + text_width(second)) / 2, (first, second)


def test_tooltip_names_the_amounts() -> None:
    series = SpendSeries("hour", (SpendBucket(NOW, 3, 0.25, 1.0),))

    group = buckets(ET.fromstring(render_spend_chart(series)))[0]

    title = group.find(f"{SVG}title")
    assert title is not None
    assert title.text == (
        "2025-03-01 12:00 UTC: 3 requests, spent $0.25, reference model estimate $1, saved $0.75"
    )
