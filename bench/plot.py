"""The makespan plot: bulkkm, the ideal and the thread-pool scripts against fleet size."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a CI machine

import matplotlib.pyplot as plt
from matplotlib.ticker import ScalarFormatter

from bench.scenarios import MakespanFigure

__all__ = ["plot_makespan"]


def plot_makespan(figures: Sequence[MakespanFigure], path: Path, *, note: str) -> None:
    """Write a PNG of makespan (s) against targets, log-log, one line per client."""
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    targets = [f.targets for f in figures]
    ax.plot(targets, [f.seconds for f in figures], "o-", label="bulkkm")
    ax.plot(targets, [f.ideal_seconds for f in figures], "s--", label="ideal")
    threads = sorted({s.threads for f in figures for s in f.scripts})
    for count in threads:
        points = [(f.targets, s.seconds) for f in figures for s in f.scripts if s.threads == count]
        ax.plot(
            [x for x, _ in points],
            [y for _, y in points],
            "^:",
            label=f"netapp_ontap, {count} threads",
        )
    for f in figures:
        ax.annotate(f.fleet, (f.targets, f.seconds), textcoords="offset points", xytext=(5, -12))
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("targets (one key server to add per SVM key manager)")
    ax.set_ylabel("makespan (s)")
    ax.set_title("Makespan against fleet size, simulator latency 50 ms, concurrency 4")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.text(0.01, 0.01, note, fontsize=7, alpha=0.7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
