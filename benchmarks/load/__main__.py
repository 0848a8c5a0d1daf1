"""Load harness: bothub on SQLite through Slack, Teams or Discord, and a bare Slack baseline.

Starts a fake model (set time to first byte and token rate) and the platform's fake (Slack,
Teams' Bot Framework or Discord) in this process, the target as a subprocess (`bothub serve` on
SQLite in a temporary data directory, or, for Slack only, the baseline in
benchmarks/load/baseline.py), asks questions the platform's way at a fixed rate (signed Slack
events, signed Teams activities, Discord gateway events) and measures, per question, the time
to the first visible piece of the answer and to the final answer at the fake, less the model's
own time; counts lost and duplicated answers; reads the target's peak RSS. Prints the figures
and writes benchmarks/results/load.json.

    .venv/bin/python -m benchmarks.load --target both --rate 100 --duration 30
    .venv/bin/python -m benchmarks.load --platform teams --rate 10 --duration 30
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.load.driver import PLATFORMS
from benchmarks.load.harness import LoadSettings, run_target
from benchmarks.load.storage import STORAGES

RESULTS = Path(__file__).resolve().parents[1] / "results"


FIGURES = [  # (label, key in a target's figures)
    ("acknowledged (placeholder or stream opened), ms", "observed_acknowledged_ms"),
    ("first answer text seen, ms", "observed_first_ms"),
    ("final answer seen, ms", "observed_last_ms"),
    ("hub-added to first text, ms", "added_first_ms"),
    ("hub-added to final answer, ms", "added_last_ms"),
    ("hub time before the model is asked, ms", "hub_before_model_ms"),
    ("the model's own time to first piece (at the fake), ms", "model_first_ms"),
    ("the model's own time to the end (at the fake), ms", "model_last_ms"),
]
COUNTS = [("msg/s sent", "rate_sent"), ("msg/s answered", "rate_answered"),
          ("questions", "questions"), ("answered", "answered"), ("lost", "lost"),
          ("duplicated", "duplicated"),
          ("events not acked 200 (Discord: not dispatched)", "not_acked"),
          ("model calls per question", "model_calls_per_question"),
          ("target CPU per question, ms", "cpu_ms_per_question"),
          ("harness CPU per question, ms", "harness_cpu_ms_per_question"),
          ("peak RSS, MB", "peak_rss_mb")]


def table(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Rows of figures, one column per target (p50 / p95 / p99 for the times)."""
    rows = [["", *results]]
    for label, key in FIGURES:
        rows.append([f"{label} p50 / p95 / p99",
                     *(f"{f[key]['p50']} / {f[key]['p95']} / {f[key]['p99']}"
                       for f in results.values())])
    for label, key in COUNTS:
        rows.append([label, *(str(f[key]) for f in results.values())])
    return rows


def _ratios(hub: dict[str, Any], base: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """bothub / baseline, for the observed times (each includes the same model time)."""
    out: dict[str, dict[str, float | None]] = {}
    for key in ("observed_acknowledged_ms", "observed_first_ms", "observed_last_ms"):
        out[key] = {}
        for q in ("p50", "p95", "p99"):
            a, b = hub[key][q], base[key][q]
            out[key][q] = round(a / b, 2) if a is not None and b else None
    a, b = hub["peak_rss_mb"], base["peak_rss_mb"]
    out["peak_rss_mb"] = {"ratio": round(a / b, 2) if a and b else None}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--target", choices=["bothub", "baseline", "both"], default=None,
                        help="default: both on Slack, bothub elsewhere (the baseline is Slack's)")
    parser.add_argument("--platform", choices=PLATFORMS, default="slack",
                        help="whose fake the questions come through")
    parser.add_argument("--storage", choices=STORAGES, default="sqlite",
                        help="bothub's storage: SQLite, or postgres (PostgreSQL + Redis: a "
                             "database of the run's own at BOTHUB_BENCH_POSTGRES_URL, Redis "
                             "database 13 at BOTHUB_BENCH_REDIS_URL, emptied)")
    parser.add_argument("--rate", type=float, default=20.0, help="questions per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of sending")
    parser.add_argument("--ttft", type=float, default=0.2,
                        help="the fake model's time to first byte, seconds")
    parser.add_argument("--token-interval", type=float, default=0.02,
                        help="seconds between the fake model's tokens")
    parser.add_argument("--answer-tokens", type=int, default=50, help="tokens per answer")
    parser.add_argument("--conversations", type=int, default=1000,
                        help="threads the questions are spread over")
    parser.add_argument("--slack-streaming", choices=["native", "edits"], default="native",
                        help="bothub's Slack streaming (native is the product default)")
    parser.add_argument("--output", type=Path, default=None,
                        help="default: benchmarks/results/load.json (Slack), "
                             "load-<platform>.json (Teams, Discord)")
    args = parser.parse_args()
    if args.rate <= 0 or args.duration <= 0 or args.conversations < 1 or args.answer_tokens < 2:
        parser.error("--rate and --duration must be > 0, --conversations >= 1, "
                     "--answer-tokens >= 2")
    if args.target is None:
        args.target = "both" if args.platform == "slack" else "bothub"
    if args.output is None:
        suffix = "" if args.platform == "slack" else f"-{args.platform}"
        args.output = RESULTS / f"load{suffix}.json"
    if args.platform != "slack" and args.target != "bothub":
        parser.error(f"--target {args.target}: the baseline is a Slack bot; with "
                     f"--platform {args.platform} only --target bothub can run")

    settings = LoadSettings(rate=args.rate, duration=args.duration, ttft=args.ttft,
                            token_interval=args.token_interval,
                            answer_tokens=args.answer_tokens, conversations=args.conversations,
                            native_streaming=args.slack_streaming == "native",
                            platform=args.platform, storage=args.storage)
    names = ["bothub", "baseline"] if args.target == "both" else [args.target]
    results: dict[str, Any] = {}
    for name in names:
        print(f"running {name} on {args.platform} ...", file=sys.stderr, flush=True)
        results[name] = run_target(name, settings)

    print(f"model's own time: first piece {settings.model_first * 1000:.0f} ms, "
          f"end of answer {settings.model_last * 1000:.0f} ms "
          f"(ttft {settings.ttft * 1000:.0f} ms, {settings.answer_tokens} tokens every "
          f"{settings.token_interval * 1000:.0f} ms); {args.rate:g} msg/s for {args.duration:g} s "
          f"over {args.conversations} conversations on {args.platform}, bothub on {args.storage}")
    rows = table(results)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": results[names[0]]["cpus"], "python": platform.python_version(),
                    "platform": platform.platform()},
        "settings": {**asdict(settings), "model_first_s": settings.model_first,
                     "model_last_s": settings.model_last},
        "results": results,
    }
    if len(results) == 2:
        report["ratios_bothub_over_baseline"] = _ratios(results["bothub"], results["baseline"])
        for key, value in report["ratios_bothub_over_baseline"].items():
            print(f"bothub / baseline, {key}: {value}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
