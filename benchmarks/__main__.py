"""Every figure of issue 10 in one command: load per platform and storage against the baseline,
the sustained rate, a flood, memory with many open conversations, retrieval at 100k chunks.

    .venv/bin/python -m benchmarks              # the full run, about half an hour on 2 cores
    .venv/bin/python -m benchmarks --quick      # the same steps, small: a few minutes
    .venv/bin/python -m benchmarks --only load,retrieval

Prints the figures, writes them to benchmarks/results/summary.json and draws
benchmarks/results/summary.png. Each step is one of the benchmarks of this folder run with the
settings below; `benchmarks/README.md` explains what each measures and how.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks import chart
from benchmarks.load.harness import LoadSettings, run_target

RESULTS = Path(__file__).resolve().parent / "results"
STEPS = ("load", "sustained", "overload", "conversations", "retrieval")
# A rate is sustained while the hub adds at most this much to the model's own time, at p99,
# to the first text and to the final answer (the "model's time + 100 ms").
SUSTAINED_MS = 100.0
TARGETS = {"overload_added_first_p99_ms": 50.0, "conversations_rss_mb": 1024.0,
           "retrieval_p99_ms": 20.0}


@dataclass(frozen=True)
class Plan:
    """How big each step is: the full run, or `--quick`."""

    load_rate: float = 10.0
    load_duration: float = 30.0
    sustained_rates: tuple[float, ...] = (5.0, 10.0, 15.0, 20.0, 30.0, 40.0)
    sustained_duration: float = 20.0
    overload_rate: float = 100.0
    overload_duration: float = 30.0
    conversations: int = 10_000
    conversations_rate: float = 20.0
    chunks: int = 100_000
    documents: int = 10_000
    keep: Path | None = None  # retrieval: a folder to keep the chunk table in, and reuse


QUICK = Plan(load_rate=5.0, load_duration=6.0, sustained_rates=(5.0, 10.0),
             sustained_duration=6.0, overload_rate=50.0, overload_duration=4.0,
             conversations=300, conversations_rate=20.0, chunks=5_000, documents=200)

# (label, target process, platform, storage): what the load step compares
LOAD_SCENARIOS = (("slack, SQLite", "bothub", "slack", "sqlite"),
                  ("baseline (bolt + openai)", "baseline", "slack", "sqlite"),
                  ("slack, PostgreSQL + Redis", "bothub", "slack", "postgres"),
                  ("teams, SQLite", "bothub", "teams", "sqlite"),
                  ("discord, SQLite", "bothub", "discord", "sqlite"))


def _settings(rate: float, duration: float, **changes: Any) -> LoadSettings:
    base = LoadSettings(rate=rate, duration=duration, ttft=0.2, token_interval=0.02,
                        answer_tokens=50, conversations=1000)
    return replace(base, **changes)


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def load_step(plan: Plan) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for label, target, platform_name, storage in LOAD_SCENARIOS:
        _log(f"load: {label} at {plan.load_rate:g} msg/s for {plan.load_duration:g} s")
        results[label] = run_target(target, _settings(plan.load_rate, plan.load_duration,
                                                      platform=platform_name, storage=storage))
    return results


def _p99(figures: dict[str, Any], key: str) -> float | None:
    value = (figures.get(key) or {}).get("p99")
    return float(value) if isinstance(value, int | float) else None


def sustained_step(plan: Plan) -> dict[str, Any]:
    """Offered rates in turn, until one is not sustained: the last one that was is the figure."""
    steps, best = [], None
    for rate in plan.sustained_rates:
        _log(f"sustained: {rate:g} msg/s for {plan.sustained_duration:g} s")
        figures = run_target("bothub", _settings(rate, plan.sustained_duration))
        first, last = _p99(figures, "added_first_ms"), _p99(figures, "added_last_ms")
        held = (first is not None and last is not None and first <= SUSTAINED_MS
                and last <= SUSTAINED_MS and figures["lost"] == 0 and figures["duplicated"] == 0)
        steps.append({"rate": rate, "added_first_p99": first, "added_last_p99": last,
                      "rate_answered": figures.get("rate_answered"), "lost": figures["lost"],
                      "duplicated": figures["duplicated"], "sustained": held,
                      "cpu_ms_per_question": figures.get("cpu_ms_per_question")})
        if not held:
            break
        best = rate
    return {"threshold_ms": SUSTAINED_MS, "steps": steps, "sustained_rate": best}


def overload_step(plan: Plan) -> dict[str, Any]:
    _log(f"overload: {plan.overload_rate:g} msg/s for {plan.overload_duration:g} s")
    return run_target("bothub", _settings(plan.overload_rate, plan.overload_duration))


def conversations_step(plan: Plan) -> dict[str, Any]:
    """One question in each of `conversations` threads, at a rate the hub sustains, with a
    short answer: memory as conversations accumulate, sampled as they open."""
    n = plan.conversations
    _log(f"conversations: {n:,} at {plan.conversations_rate:g} msg/s")
    figures = run_target("bothub", _settings(
        plan.conversations_rate, n / plan.conversations_rate, conversations=n, ttft=0.05,
        answer_tokens=10))
    return {"conversations": n, "peak_rss_mb": figures.get("peak_rss_mb"),
            "rss_samples": figures.get("rss_samples") or [], "lost": figures["lost"],
            "duplicated": figures["duplicated"], "answered": figures["answered"],
            "cpu_ms_per_question": figures.get("cpu_ms_per_question")}


def retrieval_step(plan: Plan) -> dict[str, Any]:
    from benchmarks import retrieval  # lancedb and numpy: only when this step runs

    _log(f"retrieval: {plan.chunks:,} chunks, sync of {plan.documents:,} documents")
    report = retrieval.run(chunks=plan.chunks, documents=plan.documents, keep=plan.keep)
    query = report["query"]
    queries = {mode: {q: round(query[mode][f"{q}_ms"], 1) for q in ("p50", "p95", "p99")}
               for mode in ("hybrid", "fulltext")}
    return {"chunks": plan.chunks, "queries": queries, "report": report}


def verdicts(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue against what this run measured (None: that step did not run)."""
    out = []
    overload = summary.get("overload")
    measured = _p99(overload, "added_first_ms") if overload else None
    out.append({"target": f"hub-added p99 to first token at "
                          f"{overload.get('rate_asked') if overload else '?'} msg/s",
                "limit": f"<= {TARGETS['overload_added_first_p99_ms']:g} ms",
                "measured": measured,
                "met": None if measured is None else
                measured <= TARGETS["overload_added_first_p99_ms"]})
    conversations = summary.get("conversations")
    rss = conversations.get("peak_rss_mb") if conversations else None
    opened = conversations["conversations"] if conversations else "?"
    out.append({"target": f"peak RSS with {opened} open conversations",
                "limit": f"<= {TARGETS['conversations_rss_mb']:g} MB", "measured": rss,
                "met": None if rss is None else rss <= TARGETS["conversations_rss_mb"]})
    retrieval = summary.get("retrieval")
    for mode in ("hybrid", "fulltext"):
        p99 = retrieval["queries"][mode]["p99"] if retrieval else None
        out.append({"target": f"retrieval p99, {mode}, "
                              f"{retrieval['chunks'] if retrieval else '?'} chunks",
                    "limit": f"<= {TARGETS['retrieval_p99_ms']:g} ms", "measured": p99,
                    "met": None if p99 is None else p99 <= TARGETS["retrieval_p99_ms"]})
    runs = [*(summary.get("load") or {}).values(), *([overload] if overload else [])]
    lost = sum(r["lost"] for r in runs) + (conversations["lost"] if conversations else 0)
    duplicated = sum(r["duplicated"] for r in runs) + (
        conversations["duplicated"] if conversations else 0)
    out.append({"target": "lost / duplicated answers, every run", "limit": "0 / 0",
                "measured": f"{lost} / {duplicated}",
                "met": (lost, duplicated) == (0, 0) if runs or conversations else None})
    return out


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return " / ".join(str(value.get(q)) for q in ("p50", "p95", "p99"))
    return "-" if value is None else str(value)


def print_summary(summary: dict[str, Any]) -> None:
    load = summary.get("load") or {}
    if load:
        print("\nLoad (ms, p50 / p95 / p99; hub-added = observed less the model's own time)")
        rows: list[tuple[str, ...]] = [("", *load)]
        for label, key in (("hub-added to first text", "added_first_ms"),
                           ("hub-added to final answer", "added_last_ms"),
                           ("hub time before the model is asked", "hub_before_model_ms"),
                           ("first text seen", "observed_first_ms"),
                           ("acknowledged", "observed_acknowledged_ms")):
            rows.append((label, *(_cell(f.get(key)) for f in load.values())))
        rows.append(("answered / lost / duplicated",
                     *(f"{f['answered']} / {f['lost']} / {f['duplicated']}"
                       for f in load.values())))
        for label, key in (("CPU per question, ms", "cpu_ms_per_question"),
                           ("peak RSS, MB", "peak_rss_mb")):
            rows.append((label, *(_cell(f.get(key)) for f in load.values())))
        _print_rows(rows)
    sustained = summary.get("sustained")
    if sustained:
        print(f"\nSustained rate (hub-added p99 <= {sustained['threshold_ms']:g} ms to the first "
              f"text and to the final answer, nothing lost): {sustained['sustained_rate']} msg/s")
        _print_rows([("offered msg/s", "first p99", "final p99", "answered msg/s", "lost"),
                     *[(str(s["rate"]), _cell(s["added_first_p99"]), _cell(s["added_last_p99"]),
                        _cell(s["rate_answered"]), str(s["lost"])) for s in sustained["steps"]]])
    overload = summary.get("overload")
    if overload:
        print(f"\nFlood at {overload['rate_asked']:g} msg/s: hub-added to first text "
              f"{_cell(overload['added_first_ms'])} ms, answered {overload['answered']} of "
              f"{overload['questions']} ({overload['rate_answered']} msg/s), lost "
              f"{overload['lost']}, duplicated {overload['duplicated']}")
    conversations = summary.get("conversations")
    if conversations:
        print(f"\n{conversations['conversations']:,} conversations: peak RSS "
              f"{conversations['peak_rss_mb']} MB, {conversations['answered']} answered, "
              f"{conversations['lost']} lost, {conversations['duplicated']} duplicated")
    retrieval = summary.get("retrieval")
    if retrieval:
        print(f"\nRetrieval at {retrieval['chunks']:,} chunks (ms, p50 / p95 / p99): "
              + "; ".join(f"{mode} {_cell(q)}" for mode, q in retrieval["queries"].items()))
    print("\nTargets")
    _print_rows([("target", "limit", "measured", "met")]
                + [(v["target"], v["limit"], _cell(v["measured"]),
                    {True: "yes", False: "NO", None: "not run"}[v["met"]])
                   for v in summary["targets"]])


def _print_rows(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="every step, small (minutes): to try the command, not for figures")
    parser.add_argument("--only", default=",".join(STEPS),
                        help=f"comma-separated steps of {', '.join(STEPS)}")
    parser.add_argument("--keep", type=Path, default=None,
                        help="retrieval: keep the 100k-chunk table in this folder and reuse it "
                             "on later runs (building it takes minutes)")
    parser.add_argument("--output", type=Path, default=RESULTS,
                        help="folder for summary.json and summary.png")
    args = parser.parse_args()
    steps = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown or not steps:
        parser.error(f"--only: unknown step(s) {', '.join(unknown) or '(none given)'}; "
                     f"choose from {', '.join(STEPS)}")
    plan = replace(QUICK if args.quick else Plan(), keep=args.keep)
    runners = {"load": load_step, "sustained": sustained_step, "overload": overload_step,
               "conversations": conversations_step, "retrieval": retrieval_step}
    started = time.monotonic()
    summary: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpus": _cpus(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "plan": {"quick": args.quick, **{k: str(v) if isinstance(v, Path) else v
                                         for k, v in plan.__dict__.items()}},
    }
    for step in STEPS:
        if step in steps:
            summary[step] = runners[step](plan)
    summary["targets"] = verdicts(summary)
    summary["seconds"] = round(time.monotonic() - started)
    print_summary(summary)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n",
                                              encoding="utf-8")
    png = chart.draw(summary, args.output / "summary.png")
    print(f"\nwrote {args.output / 'summary.json'} and {png} in {summary['seconds']} s")


def _cpus() -> int | None:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


if __name__ == "__main__":
    main()
