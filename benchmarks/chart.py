"""The benchmark summary as one PNG: four panels, each with the issue's target drawn on it.

1. Hub-added time to the first text and to the final answer (p50 / p95 / p99) per scenario.
2. The sustained-rate search: hub-added p99 against the offered rate, with the model's time +
   100 ms line that defines a sustained rate.
3. Resident memory against open conversations, with the 1 GB line.
4. Retrieval at 100k chunks, p50 / p95 / p99 per kind of query, with the 20 ms line.

A part of the summary that was not run leaves its panel saying so, rather than failing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display here or on a server

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

QUANTILES = ("p50", "p95", "p99")


def draw(summary: dict[str, Any], path: Path) -> Path:
    """Write the chart of `summary` (as built by `python -m benchmarks`) to `path`."""
    figure, axes = plt.subplots(2, 2, figsize=(14, 10))
    _latency(axes[0][0], summary.get("load") or {}, summary.get("overload"))
    _sustained(axes[0][1], summary.get("sustained"))
    _memory(axes[1][0], summary.get("conversations"))
    _retrieval(axes[1][1], summary.get("retrieval"))
    machine = summary.get("machine") or {}
    figure.suptitle(f"bothub benchmarks, {summary.get('when', '')} "
                    f"({machine.get('cpus', '?')} CPUs, Python {machine.get('python', '?')})")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _not_run(ax: Axes, title: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _latency(ax: Axes, load: dict[str, Any], overload: dict[str, Any] | None) -> None:
    title = "Hub-added time (observed less the model's own), ms"
    scenarios = {name: figures for name, figures in load.items() if figures}
    if overload:
        scenarios[f"overload {overload.get('rate_asked', '?')} msg/s"] = overload
    if not scenarios:
        _not_run(ax, title)
        return
    names = list(scenarios)
    width = 0.13
    for i, (key, label) in enumerate((("added_first_ms", "first text"),
                                      ("added_last_ms", "final answer"))):
        for j, q in enumerate(QUANTILES):
            values = [_value(scenarios[n].get(key), q) for n in names]
            offset = (i * len(QUANTILES) + j - 2.5) * width
            ax.bar([k + offset for k in range(len(names))], values, width,
                   label=f"{label} {q}", color=plt.get_cmap("tab20c")(i * 4 + j))
    ax.axhline(50, color="red", linestyle="--", linewidth=1, label="target: first text p99 50 ms")
    ax.set_xticks(range(len(names)), names, rotation=15, ha="right", fontsize=8)
    ax.set_yscale("symlog", linthresh=100)
    ax.set_ylim(bottom=-20)  # a few ms below zero is the stamps' noise (see the README)
    ax.set_ylabel("ms (log above 100)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)


def _sustained(ax: Axes, sustained: dict[str, Any] | None) -> None:
    title = "Sustained rate: hub-added p99 against offered rate"
    steps = (sustained or {}).get("steps") or []
    if not steps:
        _not_run(ax, title)
        return
    rates = [s["rate"] for s in steps]
    ax.plot(rates, [s.get("added_first_p99") for s in steps], "o-", label="to first text p99")
    ax.plot(rates, [s.get("added_last_p99") for s in steps], "s-", label="to final answer p99")
    limit = sustained.get("threshold_ms", 100) if sustained else 100
    ax.axhline(limit, color="red", linestyle="--", linewidth=1,
               label=f"{limit:g} ms over the model's own time")
    best = sustained.get("sustained_rate") if sustained else None
    if best:
        ax.axvline(best, color="green", linestyle=":", label=f"sustained: {best:g} msg/s")
    ax.set_yscale("log")
    ax.set_xlabel("questions per second (offered)")
    ax.set_ylabel("ms")
    ax.set_title(title)
    ax.legend(fontsize=8)


def _memory(ax: Axes, conversations: dict[str, Any] | None) -> None:
    title = "Hub memory (RSS) against open conversations"
    samples = (conversations or {}).get("rss_samples") or []
    if not samples:
        _not_run(ax, title)
        return
    ax.plot([s[0] for s in samples], [s[1] for s in samples], "-", label="bothub RSS")
    ax.axhline(1024, color="red", linestyle="--", linewidth=1, label="target: 1 GB")
    ax.set_xlabel("conversations opened")
    ax.set_ylabel("MB")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.legend(fontsize=8)


def _retrieval(ax: Axes, retrieval: dict[str, Any] | None) -> None:
    title = "Retrieval at 100k chunks, ms"
    queries = {k: v for k, v in (retrieval or {}).get("queries", {}).items() if v}
    if not queries:
        _not_run(ax, title)
        return
    names = list(queries)
    width = 0.25
    for j, q in enumerate(QUANTILES):
        ax.bar([k + (j - 1) * width for k in range(len(names))],
               [_value(queries[n], q) for n in names], width, label=q)
    ax.axhline(20, color="red", linestyle="--", linewidth=1, label="target: p99 20 ms")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("ms")
    ax.set_title(title)
    ax.legend(fontsize=8)


def _value(distribution: Any, quantile: str) -> float:
    if isinstance(distribution, dict) and isinstance(distribution.get(quantile), int | float):
        return float(distribution[quantile])
    return 0.0
