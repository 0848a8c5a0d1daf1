"""`python -m benchmarks`: its verdicts against the issue's targets, and its chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from benchmarks.__main__ import verdicts
from benchmarks.chart import draw


def _run(first_p99: float, lost: int = 0) -> dict[str, Any]:
    spread = {"p50": first_p99 / 2, "p95": first_p99 * 0.9, "p99": first_p99}
    return {"added_first_ms": spread, "added_last_ms": spread, "observed_first_ms": spread,
            "observed_acknowledged_ms": spread, "answered": 10 - lost, "lost": lost,
            "duplicated": 0, "questions": 10, "rate_asked": 100.0, "rate_answered": 9.0,
            "cpu_ms_per_question": 40.0, "peak_rss_mb": 400.0}


def _summary(overload_p99: float, rss: float, hybrid_p99: float, lost: int = 0) -> dict[str, Any]:
    return {
        "when": "2026-12-07 12:00 UTC", "machine": {"cpus": 2, "python": "3.11.7"},
        "load": {"slack, SQLite": _run(30.0), "baseline (bolt + openai)": _run(10.0, lost)},
        "sustained": {"threshold_ms": 100.0, "sustained_rate": 10.0, "steps": [
            {"rate": 5.0, "added_first_p99": 40.0, "added_last_p99": 80.0, "lost": 0},
            {"rate": 10.0, "added_first_p99": 60.0, "added_last_p99": 95.0, "lost": 0},
            {"rate": 15.0, "added_first_p99": 400.0, "added_last_p99": 900.0, "lost": 0}]},
        "overload": _run(overload_p99),
        "conversations": {"conversations": 10_000, "peak_rss_mb": rss, "lost": 0,
                          "duplicated": 0, "answered": 10_000,
                          "rss_samples": [[0, 300.0], [5000, 350.0], [10_000, rss]]},
        "retrieval": {"chunks": 100_000, "queries": {
            "hybrid": {"p50": 10.0, "p95": 15.0, "p99": hybrid_p99},
            "fulltext": {"p50": 8.0, "p95": 12.0, "p99": 14.0}}},
    }


def test_each_target_is_judged_by_what_was_measured() -> None:
    met = {v["target"]: v["met"] for v in verdicts(_summary(45.0, 900.0, 19.5))}
    assert met == {"hub-added p99 to first token at 100.0 msg/s": True,
                   "peak RSS with 10000 open conversations": True,
                   "retrieval p99, hybrid, 100000 chunks": True,
                   "retrieval p99, fulltext, 100000 chunks": True,
                   "lost / duplicated answers, every run": True}

    missed = verdicts(_summary(51.0, 1100.0, 20.5, lost=1))
    assert [v["met"] for v in missed] == [False, False, False, True, False]
    assert missed[-1]["measured"] == "1 / 0"


def test_a_step_that_did_not_run_is_not_judged() -> None:
    assert [v["met"] for v in verdicts({"load": {}})] == [None] * 5


def test_the_chart_is_a_png_with_every_panel(tmp_path: Path) -> None:
    full = draw(_summary(45.0, 900.0, 19.5), tmp_path / "full.png")
    partial = draw({"load": {"slack, SQLite": _run(30.0)}}, tmp_path / "partial.png")

    for path in (full, partial):
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (1400, 1000)
    # drawn panels hold more ink than "not run" ones
    assert full.stat().st_size > partial.stat().st_size * 1.5
