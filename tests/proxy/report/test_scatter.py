"""The cost/quality chart on hand-made candidate tables: points, frontier, floor, markers."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from policies import PolicySettings
from proxy.report.scatter import HEIGHT, WIDTH, render_scatter
from proxy.report.svg import text_width
from tests.proxy.report.factories import chart, row, typical_rows

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def candidates(root: ET.Element) -> dict[str, ET.Element]:
    groups = [g for g in root.iter(f"{SVG}g") if "candidate" in g.get("class", "").split()]
    return {g.get("data-model", ""): g for g in groups}


def classes(element: ET.Element) -> set[str]:
    return set(element.get("class", "").split())


def marker(group: ET.Element) -> ET.Element:
    found = group.find(f"{SVG}circle[@class='marker']")
    assert found is not None
    return found


def test_one_point_per_candidate() -> None:
    root = parse(render_scatter(chart(), current_model="small"))

    groups = candidates(root)
    assert sorted(groups) == sorted(row.model for row in typical_rows())
    assert len(root.findall(f".//{SVG}circle[@class='marker']")) == 5


def test_points_inside_view_box() -> None:
    root = parse(render_scatter(chart(), current_model="small"))

    for model, group in candidates(root).items():
        circle = marker(group)
        x, y = float(circle.get("cx", "nan")), float(circle.get("cy", "nan"))
        assert 0 < x < WIDTH, model
        assert 0 < y < HEIGHT, model


def test_higher_quality_drawn_higher() -> None:
    root = parse(render_scatter(chart(), current_model="small"))
    groups = candidates(root)

    small_y = float(marker(groups["small"]).get("cy", "nan"))
    llama_y = float(marker(groups["local-llama"]).get("cy", "nan"))
    assert small_y < llama_y  # SVG y grows downwards


def test_cheaper_drawn_further_left() -> None:
    root = parse(render_scatter(chart(), current_model="small"))
    groups = candidates(root)

    xs = [float(marker(groups[model]).get("cx", "nan")) for model in ("small", "medium", "big")]
    assert xs == sorted(xs)


def test_frontier_joins_frontier_models_by_cost() -> None:
    root = parse(render_scatter(chart(), current_model="small"))

    frontier = root.find(f".//{SVG}polyline[@class='frontier']")
    assert frontier is not None
    assert frontier.get("data-models") == "local-llama small fast-but-slow"
    assert len(frontier.get("points", "").split()) == 3


def test_floor_dashed_with_label() -> None:
    root = parse(render_scatter(chart(floor=8.0), current_model="small"))

    floor = root.find(f".//{SVG}g[@class='quality-floor']")
    assert floor is not None
    assert floor.get("data-value") == "8.0000"
    line = floor.find(f"{SVG}line")
    assert line is not None
    assert line.get("stroke-dasharray")
    label = floor.find(f"{SVG}text")
    assert label is not None
    assert label.text == "quality floor 8.00 (min_quality)"


def test_no_floor_no_floor_line() -> None:
    svg = render_scatter(chart(floor=None), current_model="small")

    assert "quality-floor" not in svg
    assert "quality floor" not in svg  # nor in the legend


def test_latency_ineligible_crossed() -> None:
    groups = candidates(parse(render_scatter(chart(), current_model="small")))

    slow = groups["fast-but-slow"]
    assert "over-latency" in classes(slow)
    assert slow.find(f"{SVG}path[@class='cross']") is not None
    assert marker(slow).get("fill") == "#ffffff"
    for model in ("small", "big", "medium", "local-llama"):
        assert groups[model].find(f"{SVG}path[@class='cross']") is None, model


def test_ineligible_hollow_eligible_filled() -> None:
    groups = candidates(parse(render_scatter(chart(), current_model="small")))

    assert marker(groups["local-llama"]).get("fill") == "#ffffff"
    assert "ineligible" in classes(groups["local-llama"])
    assert marker(groups["big"]).get("fill") != "#ffffff"
    assert "eligible" in classes(groups["big"])


def test_chosen_and_current_highlighted() -> None:
    groups = candidates(parse(render_scatter(chart(chosen="small"), current_model="big")))

    assert "chosen" in classes(groups["small"])
    assert groups["small"].find(f"{SVG}circle[@class='ring-chosen']") is not None
    assert "current" in classes(groups["big"])
    assert groups["big"].find(f"{SVG}circle[@class='ring-current']") is not None
    labels = {model: group.find(f"{SVG}text[@class='label']") for model, group in groups.items()}
    assert labels["small"] is not None and labels["small"].text == "small (chosen)"
    assert labels["big"] is not None and labels["big"].text == "big (current)"
    assert labels["medium"] is not None and labels["medium"].text == "medium"


def test_error_bars_span_interval() -> None:
    groups = candidates(parse(render_scatter(chart(), current_model="small")))

    bar = groups["small"].find(f"{SVG}path[@class='error-bar']")
    assert bar is not None
    assert bar.get("data-low") == "8.3000"
    assert bar.get("data-high") == "8.9000"
    cy = float(marker(groups["small"]).get("cy", "nan"))
    # The path starts "M{x} {y of low} V{y of high}", and SVG y grows downwards.
    tokens = bar.get("d", "").split()
    y_low, y_high = float(tokens[1]), float(tokens[2].removeprefix("V"))
    assert y_high < cy < y_low


def test_missing_interval_no_error_bar() -> None:
    rows = (row("big", 0.01, 8.7), row("small", 0.002, 8.6, interval=None))

    groups = candidates(parse(render_scatter(chart(rows), current_model="big")))

    assert groups["big"].find(f"{SVG}path[@class='error-bar']") is not None
    assert groups["small"].find(f"{SVG}path[@class='error-bar']") is None


def test_unscored_candidate_in_no_score_band() -> None:
    rows = (row("big", 0.01, 8.7), row("new", 0.003, None))

    root = parse(render_scatter(chart(rows), current_model="big"))

    groups = candidates(root)
    assert set(groups) == {"big", "new"}
    assert groups["new"].get("data-quality") == ""
    texts = [text.text for text in root.iter(f"{SVG}text")]
    assert "no score" in texts
    assert float(marker(groups["new"]).get("cy", "nan")) > float(
        marker(groups["big"]).get("cy", "nan")
    )


def test_one_candidate_renders() -> None:
    rows = (row("only", 0.004, 8.0, latency=None),)
    settings = PolicySettings(max_latency_p95_ms=None)

    root = parse(render_scatter(chart(rows, chosen="only", settings=settings), "only"))

    group = candidates(root)["only"]
    cx = float(marker(group).get("cx", "nan"))
    assert math.isfinite(cx)
    assert "over-latency" not in classes(group)


@pytest.mark.parametrize(
    ("costs", "log_scale"),
    [((0.0004, 0.01), True), ((0.002, 0.01), False), ((0.001, 0.0201), True)],
)
def test_log_scale_over_20x(costs: tuple[float, float], log_scale: bool) -> None:
    rows = (row("cheap", costs[0], 8.0), row("big", costs[1], 8.7))

    svg = render_scatter(chart(rows, chosen="big"), "big")

    assert ("logarithmic scale" in svg) is log_scale
    assert ("linear scale" in svg) is not log_scale


def test_free_model_on_log_axis() -> None:
    rows = (row("local", 0.0, 7.9), row("small", 0.0005, 8.4), row("big", 0.02, 8.7))

    root = parse(render_scatter(chart(rows, chosen="small"), "big"))

    texts = [text.text for text in root.iter(f"{SVG}text")]
    assert "$0" in texts
    groups = candidates(root)
    xs = {model: float(marker(group).get("cx", "nan")) for model, group in groups.items()}
    assert xs["local"] < xs["small"] < xs["big"]


def test_labels_do_not_overlap() -> None:
    crowded = tuple(
        row(f"model-{index}", 0.002 + index * 0.0001, 8.5 + (index % 3) * 0.02)
        for index in range(6)
    )
    root = parse(render_scatter(chart((*typical_rows(), *crowded)), "small"))

    boxes = []
    for text in root.iter(f"{SVG}text"):
        if text.get("class") != "label":
            continue
        x, y = float(text.get("x", "nan")), float(text.get("y", "nan"))
        width = text_width(text.text or "")
        anchor = text.get("text-anchor")
        left = x - width / 2
        if anchor == "start":
            left = x
        elif anchor == "end":
            left = x - width
        boxes.append((left, y - 11, left + width, y + 3, text.text))
    assert len(boxes) == 11
    for index, first in enumerate(boxes):
        for second in boxes[index + 1 :]:
            apart = (
                first[2] <= second[0]
                or second[2] <= first[0]
                or first[3] <= second[1]
                or second[3] <= first[1]
            )
            assert apart, f"labels {first[4]} and {second[4]} overlap"


def test_model_name_escaped_in_svg() -> None:
    hostile = '<script>alert("x")</script>'
    rows = (row("big", 0.01, 8.7), row(hostile, 0.002, 8.6))

    svg = render_scatter(chart(rows, chosen=hostile), "big")

    assert "<script" not in svg
    assert hostile in candidates(parse(svg))


def test_title_and_description() -> None:
    root = parse(render_scatter(chart(), current_model="small"))

    assert root.get("role") == "img"
    title = root.find(f"{SVG}title")
    desc = root.find(f"{SVG}desc")
    assert title is not None and title.text
    assert desc is not None and "decision 7" in (desc.text or "")


def test_legend_lists_marker_kinds() -> None:
    root = parse(render_scatter(chart(), current_model="small"))

    legend = root.find(f".//{SVG}g[@class='legend']")
    assert legend is not None
    labels = {text.text for text in legend.iter(f"{SVG}text")}
    assert {"eligible", "not eligible", "over latency ceiling", "chosen", "current"} <= labels
    assert {"Pareto frontier", "quality floor", "90% interval"} <= labels


def test_legend_omits_absent_kinds() -> None:
    rows = (row("big", 0.01, 8.7), row("small", 0.002, 8.6))

    root = parse(render_scatter(replace(chart(rows), quality_floor=None), "big"))

    legend = root.find(f".//{SVG}g[@class='legend']")
    assert legend is not None
    labels = {text.text for text in legend.iter(f"{SVG}text")}
    assert "over latency ceiling" not in labels
    assert "not eligible" not in labels
    assert "quality floor" not in labels


def test_linear_axis_ends_near_max_cost() -> None:
    rows = (row("small", 0.002, 8.0), row("big", 0.01, 8.7))

    root = parse(render_scatter(chart(rows, chosen="big"), "big"))

    axes = root.find(f".//{SVG}g[@class='axes']")
    assert axes is not None
    ticks = [text.text for text in axes.iter(f"{SVG}text") if (text.text or "").startswith("$")]
    assert ticks == ["$0", "$0.002", "$0.004", "$0.006", "$0.008", "$0.01", "$0.012"]
