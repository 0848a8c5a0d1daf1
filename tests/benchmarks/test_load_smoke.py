"""The load harness at a trickle: each platform's driver against a real `bothub serve`.

Three questions per platform through the platform's fake, over real sockets, so a driver that
no longer reaches the hub, or no longer finds its answers in what the fake saw, fails here
rather than in a long benchmark run. About 15 to 20 s per platform, most of it the hub
starting (it indexes the shipped sample knowledge base).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.load import harness
from benchmarks.load.driver import PLATFORMS
from benchmarks.load.harness import LoadSettings, run_target


@pytest.mark.timeout(300)  # a lost answer is waited for past the inbox's lease (90 s)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_each_question_is_answered_once_and_timed(platform: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "RESULTS", tmp_path)  # keep the real runs' logs
    settings = LoadSettings(rate=3, duration=1, ttft=0.05, token_interval=0.01,
                            answer_tokens=10, conversations=3, platform=platform)

    figures = run_target("bothub", settings)

    assert (figures["questions"], figures["answered"], figures["lost"],
            figures["duplicated"], figures["not_acked"]) == (3, 3, 0, 0, 0), \
        figures["lost_examples"]
    # Every answer was seen opening, showing its first words and ending, at the fake.
    for key in ("observed_acknowledged_ms", "observed_first_ms", "observed_last_ms"):
        assert figures[key]["n"] == 3, key
    assert figures["observed_first_ms"]["max"] <= figures["observed_last_ms"]["max"]
    # The model's own time was measured at the fake for each answer, and is what the
    # hub-added time leaves out.
    assert figures["model_last_ms"]["n"] == 3
    assert figures["model_last_ms"]["p50"] >= settings.model_last * 1000  # scripted, at least
    assert figures["added_last_ms"]["max"] < figures["observed_last_ms"]["max"]
    assert list(tmp_path.glob("load-bothub*.log"))


@pytest.mark.parametrize("target", ["baseline", "both"])
def test_the_baseline_runs_on_slack_only(target: str) -> None:
    run = subprocess.run([sys.executable, "-m", "benchmarks.load", "--platform", "teams",
                          "--target", target], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "the baseline is a Slack bot" in run.stderr
