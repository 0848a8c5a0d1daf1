"""The retrieval benchmark at a few hundred chunks: figures out, and a kept table reused.

The real run builds 100k chunks for minutes; this checks that `run()` gives the figures the
lead's `python -m benchmarks` reads, and that `--keep` builds once and then reuses the table
(asked the same queries) instead of rebuilding it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmarks import retrieval


def test_a_kept_table_is_built_once_then_reused(tmp_path: Path) -> None:
    keep = tmp_path / "kept"

    first = retrieval.run(300, 8, 0, keep, queries=5)
    again = retrieval.run(300, 8, 0, keep, queries=5)

    assert (first["query"]["reused"], again["query"]["reused"]) == (False, True)
    assert again["query"]["load_s"] == first["query"]["load_s"]  # the recorded build
    for report in (first, again):
        assert "sync" not in report  # documents=0 skips the sync figure
        for mode in ("hybrid", "fulltext"):
            figures = report["query"][mode]
            assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]
            assert figures["cpu_ms_per_query"] > 0
        json.dumps(report)  # what --output writes

    rebuilt = retrieval.run(400, 8, 0, keep, queries=5)  # another size is not reused
    assert rebuilt["query"]["reused"] is False and rebuilt["query"]["chunks"] == 400


def test_the_command_prints_the_figures_and_writes_them_as_json(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "results" / "retrieval.json"
    monkeypatch.setattr(sys, "argv", ["retrieval", "--chunks", "300", "--dims", "8",
                                      "--documents", "0", "--queries", "5",
                                      "--output", str(output)])

    retrieval.main()

    printed = capsys.readouterr().out
    written = json.loads(output.read_text(encoding="utf-8"))
    hybrid = written["query"]["hybrid"]
    assert f"p99 {hybrid['p99_ms']:.1f} ms" in printed and str(output) in printed
    assert written["query"]["chunks"] == 300 and written["cpus"]
