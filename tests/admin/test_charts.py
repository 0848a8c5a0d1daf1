"""The dashboard's SVG charts: well-formed, labelled, values on hover, hostile labels escaped."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from bot.admin.charts import (
    Box,
    Series,
    bar_chart,
    compact,
    describe_bars,
    dollars,
    hbar_chart,
    nice_ceiling,
)

SVG = "{http://www.w3.org/2000/svg}"


def svg_of(figure: str) -> ET.Element:
    """The chart's <svg> element, parsed as XML (so a stray `<` or `&` fails the test)."""
    root = ET.fromstring(figure)
    assert root.tag == "figure"
    svg = root.find(f"{SVG}svg")
    assert svg is not None
    return svg


def bar_titles(svg: ET.Element) -> list[str]:
    return [rect.findtext(f"{SVG}title") or "" for rect in svg.iter(f"{SVG}rect")]


def texts(svg: ET.Element) -> list[str]:
    return [t.text or "" for t in svg.iter(f"{SVG}text")]


def test_a_bar_chart_has_a_bar_per_value_its_value_on_hover_and_axis_labels() -> None:
    figure = bar_chart(title="Cost per day", labels=["Dec 1", "Dec 2", "Dec 3"],
                       series=[Series("Cost", [0.5, 0.0, 1.25])], y_label="US dollars",
                       x_label="Day (UTC)", value_format=dollars, noun="day")
    svg = svg_of(figure)
    assert svg.get("role") == "img"
    assert bar_titles(svg) == ["Dec 1: $0.50", "Dec 3: $1.25"]  # no bar for nothing
    labels = texts(svg)
    assert {"US dollars", "Day (UTC)", "Dec 1", "Dec 2", "Dec 3"} <= set(labels)
    assert "$0" in labels or "0" in labels
    title_id, desc_id = (svg.get("aria-labelledby") or "").split()
    assert svg.find(f"{SVG}title[@id='{title_id}']") is not None
    description = svg.findtext(f"{SVG}desc[@id='{desc_id}']")
    assert description == "Cost per day: $1.75 in total over 3 days; highest $1.25 (Dec 3)."
    caption = ET.fromstring(figure).findtext("figcaption")
    assert caption == description  # the same summary, visible under the chart


def test_bars_are_as_tall_as_their_values_and_stack_series_in_order() -> None:
    svg = svg_of(bar_chart(title="Tokens", labels=["a", "b"],
                           series=[Series("in", [30, 10]), Series("out", [10, 0])],
                           y_label="Tokens", x_label="Day",
                           box=Box(width=400, height=200, top=0, bottom=0)))
    rects = {r.findtext(f"{SVG}title"): r for r in svg.iter(f"{SVG}rect")}
    assert set(rects) == {"a · in: 30", "a · out: 10", "b · in: 10"}
    top, _ = nice_ceiling(40)
    assert top == 40

    def height(title: str) -> float:
        return float(rects[title].get("height") or 0)

    assert height("a · in: 30") == pytest.approx(150)  # 30 of 40 in a 200-unit plot
    assert height("a · out: 10") == pytest.approx(50)
    # `out` sits on top of `in`: its bottom edge is `in`'s top edge.
    out, into = rects["a · out: 10"], rects["a · in: 30"]
    assert float(out.get("y") or 0) + height("a · out: 10") == pytest.approx(
        float(into.get("y") or 0))
    legend = ET.fromstring(bar_chart(title="T", labels=["a"],
                                     series=[Series("in", [1]), Series("out", [1])],
                                     y_label="y", x_label="x")).find("div")
    assert legend is not None and "".join(legend.itertext()) == "inout"


def test_hostile_labels_and_titles_are_escaped() -> None:
    evil = '<script>alert(1)</script>&"'
    figure = bar_chart(title=evil, labels=[evil], series=[Series(evil, [1]), Series("b", [1])],
                       y_label=evil, x_label=evil)
    assert "<script>" not in figure
    svg = svg_of(figure)
    assert evil in texts(svg)  # shown as text, not run
    assert any(title.startswith(evil) for title in bar_titles(svg))
    hbar = hbar_chart(title=evil, labels=[evil], series=[Series(evil, [3])], x_label=evil)
    assert "<script>" not in hbar and evil in texts(svg_of(hbar))


def test_an_empty_period_still_draws_axes_and_says_so() -> None:
    figure = bar_chart(title="Cost per day", labels=["Dec 1", "Dec 2"],
                       series=[Series("Cost", [0, 0])], y_label="USD", x_label="Day")
    svg = svg_of(figure)
    assert bar_titles(svg) == []
    assert svg.findtext(f"{SVG}desc") == "Cost per day: nothing in this period."
    assert bar_chart(title="None", labels=[], series=[Series("x", [])], y_label="y",
                     x_label="x")  # no days at all: still a chart, not a crash


def test_crowded_day_labels_are_thinned_but_every_day_keeps_its_bar() -> None:
    labels = [f"d{n}" for n in range(90)]
    svg = svg_of(bar_chart(title="Answers", labels=labels, series=[Series("n", [1] * 90)],
                           y_label="Answers", x_label="Day", whole=True))
    assert len(bar_titles(svg)) == 90
    shown = [t for t in texts(svg) if t.startswith("d")]
    assert 5 <= len(shown) <= 15 and shown[0] == "d0"


def test_model_names_label_horizontal_bars() -> None:
    svg = svg_of(hbar_chart(title="Tokens by model", labels=["gpt-4o", "gpt-4o-mini"],
                            series=[Series("in", [1500, 700]), Series("out", [200, 100])],
                            x_label="Tokens", noun="model"))
    assert bar_titles(svg) == ["gpt-4o · in: 1,500", "gpt-4o · out: 200",
                               "gpt-4o-mini · in: 700", "gpt-4o-mini · out: 100"]
    assert {"gpt-4o", "gpt-4o-mini", "Tokens", "0", "2k"} <= set(texts(svg))
    assert svg.findtext(f"{SVG}desc") == ("Tokens by model: 2,500 in total over 2 models; "
                                          "highest 1,700 (gpt-4o).")


@pytest.mark.parametrize("values", [[-1.0], [math.nan], [math.inf]])
def test_negative_or_non_finite_values_are_refused(values: list[float]) -> None:
    with pytest.raises(ValueError, match="negative or non-finite"):
        bar_chart(title="t", labels=["a"], series=[Series("s", values)], y_label="y",
                  x_label="x")


def test_a_series_must_match_its_labels() -> None:
    with pytest.raises(ValueError, match="2 values for 1 labels"):
        bar_chart(title="t", labels=["a"], series=[Series("s", [1, 2])], y_label="y",
                  x_label="x")
    with pytest.raises(ValueError, match="at least one series"):
        bar_chart(title="t", labels=["a"], series=[], y_label="y", x_label="x")


@pytest.mark.parametrize(("value", "whole", "expected"), [
    (0, False, (1.0, 0.25)), (0, True, (1.0, 1.0)), (0.11, False, (0.15, 0.05)),
    (9, False, (10.0, 2.5)), (9, True, (10.0, 5.0)), (3, True, (3.0, 1.0)),
    (12_295, False, (15_000.0, 5_000.0)), (1_700, False, (2_000.0, 500.0)),
])
def test_axis_tops_and_steps_are_round_numbers(value: float, whole: bool,
                                               expected: tuple[float, float]) -> None:
    top, step = nice_ceiling(value, whole=whole)
    assert (top, step) == pytest.approx(expected)
    assert top >= value


def test_number_formats() -> None:
    assert [dollars(v) for v in (0, 0.0042, 1.254, 12_345.6)] == ["$0", "$0.0042", "$1.25",
                                                                  "$12,346"]
    assert [compact(v) for v in (0, 950, 1_500, 2_000_000)] == ["0", "950", "1.5k", "2M"]
    assert describe_bars("X", ["a"], [2.0], dollars, "day") == (
        "X: $2.00 in total over 1 day; highest $2.00 (a).")
