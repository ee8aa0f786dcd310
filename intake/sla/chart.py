"""The report's chart: arrivals per day stacked by category, and first-response times.

matplotlib's object API (``Figure`` + ``savefig``) rather than ``pyplot``: no global figure state
and no GUI backend, so a worker thread can draw while another does the same. Imported only by
the code that draws (`intake report --plot`, the weekly report), not by every command.
"""

from __future__ import annotations

import io
import statistics
from typing import Sequence

from matplotlib import colormaps
from matplotlib.figure import Figure

from intake.sla.report import Report

WIDTH, HEIGHT, DPI = 10.0, 7.0, 110
# Colours follow the taxonomy's order, so a category keeps its colour from one week to the next.
PALETTE = "tab20"


def render_png(report: Report, taxonomy: Sequence[str] = ()) -> bytes:
    """The chart as PNG bytes; ``taxonomy`` (the category names in order) fixes the colours."""
    figure = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI, layout="constrained")
    volume, response = figure.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    days = report.days
    positions = list(range(len(days)))
    # One label per day up to two weeks; beyond that every few days, so they never overlap.
    step = 1 if len(days) <= 14 else -(-len(days) // 12)
    labels = [(d.strftime("%a\n%d %b") if step == 1 else d.strftime("%d %b")) if i % step == 0 else ""
              for i, d in enumerate(days)]

    categories = list(report.by_category)
    order = list(taxonomy) + sorted(c for c in categories if c not in taxonomy)
    cmap = colormaps[PALETTE]
    # tab20 pairs each hue with a light tint: the ten hues first, so neighbours never look alike.
    palette = [cmap(i) for i in [*range(0, 20, 2), *range(1, 20, 2)]]
    bottom = [0] * len(days)
    for category in categories:
        index = order.index(category)
        counts = [report.daily.get(day, {}).get(category, 0) for day in days]
        volume.bar(positions, counts, bottom=bottom, label=f"{category} ({report.by_category[category]})",
                   color=palette[index % len(palette)], width=0.8)
        bottom = [b + c for b, c in zip(bottom, counts)]
    volume.set_ylabel("inquiries received")
    volume.set_title(
        f"Inquiries {report.since:%d %b} – {report.until:%d %b %Y}: {report.received} received"
        + (f", {report.targets_met_pct:g}% of first-response targets met" if report.targets_met_pct is not None else ""),
        loc="left",
    )
    volume.yaxis.get_major_locator().set_params(integer=True)
    volume.grid(axis="y", alpha=0.3)
    if categories:
        volume.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False,
                      title="category")
    else:
        volume.text(0.5, 0.5, "no inquiries in this period", transform=volume.transAxes, ha="center", color="grey")

    index_of = {day: i for i, day in enumerate(days)}
    points = [(index_of[day], hours) for day, hours in report.responses if day in index_of]
    if points:
        response.scatter([x for x, _ in points], [h for _, h in points], s=14, alpha=0.5, color="#1d3557",
                         label="one inquiry")
        medians = []
        for i in positions:
            todays = [h for x, h in points if x == i]
            medians.append(statistics.median(todays) if todays else None)
        response.plot([i for i, m in zip(positions, medians) if m is not None],
                      [m for m in medians if m is not None], color="#e63946", marker="o", label="median of the day")
        if report.p90_hours is not None:
            response.axhline(report.p90_hours, color="grey", linestyle="--", linewidth=1,
                             label=f"90th percentile ({report.p90_hours:g} h)")
        response.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    else:
        response.text(0.5, 0.5, "no first responses yet", transform=response.transAxes, ha="center", color="grey")
    response.set_ylabel("business hours to\nfirst staff reply")
    response.set_ylim(bottom=0)
    response.grid(axis="y", alpha=0.3)
    response.set_xticks(positions, labels, fontsize="small")
    response.set_xlabel("day received")

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
