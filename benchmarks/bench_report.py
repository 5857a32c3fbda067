"""Turn per-backend results into the comparison table (and its notes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import bench_catalog as cat


@dataclass
class BenchOutcome:
    """What one backend produced for one benchmark."""

    status: str = "not run"  # "ok" | "error" | "not run"
    metrics: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    elapsed_s: float | None = None


@dataclass
class BackendRun:
    """Everything measured for one backend."""

    name: str
    available: bool = True
    error: str = ""  # why the backend as a whole is unavailable
    version: str = ""
    benches: dict[str, BenchOutcome] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def fmt_value(v: float | None) -> str:
    """Three significant figures or so, without scientific notation."""
    if v is None:
        return "n/a"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def ratio(metric: cat.Metric, a: float | None, b: float | None) -> float | None:
    """How much better ``a`` is than ``b`` (>1: ``a`` is better)."""
    if a is None or b is None or a <= 0 or b <= 0:
        return None
    return a / b if metric.higher_is_better else b / a


def _value(run: BackendRun, bench: cat.Bench, metric: cat.Metric) -> float | None:
    out = run.benches.get(bench.name)
    if not run.available or out is None or out.status != "ok":
        return None
    return out.metrics.get(metric.key)


def table_rows(runs: list[BackendRun], benches: list[cat.Bench], big: bool) -> list[dict[str, Any]]:
    """One dict per metric: label, unit, value per backend, ratio of runs[0] vs runs[1]."""
    rows = []
    for bench in benches:
        for metric in cat.metrics_for(bench, big):
            values = {r.name: _value(r, bench, metric) for r in runs}
            row: dict[str, Any] = {
                "bench": bench.name,
                "metric": metric.key,
                "label": metric.label,
                "unit": metric.unit,
                "higher_is_better": metric.higher_is_better,
                "values": values,
                "ratio": None,
            }
            if len(runs) >= 2 and metric.compare:
                row["ratio"] = ratio(metric, values[runs[0].name], values[runs[1].name])
            row["compare"] = metric.compare
            rows.append(row)
    return rows


def render(runs: list[BackendRun], benches: list[cat.Bench], big: bool) -> str:
    """The printable table, followed by one note per missing figure."""
    rows = table_rows(runs, benches, big)
    headers = ["benchmark", "unit"] + [r.name for r in runs]
    if len(runs) >= 2:
        headers.append(f"{runs[0].name} vs {runs[1].name}")
    lines_data = []
    for row in rows:
        cells = [row["label"], row["unit"] + (" ↑" if row["higher_is_better"] else " ↓")]
        cells += [fmt_value(row["values"][r.name]) for r in runs]
        if len(runs) >= 2:
            if not row["compare"]:
                cells.append("(baseline)")
            else:
                cells.append("n/a" if row["ratio"] is None else f"{row['ratio']:.2f}x")
        lines_data.append(cells)
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *lines_data, strict=True)]

    def line(cells: list[str]) -> str:
        first = [f"{cells[0]:<{widths[0]}}", f"{cells[1]:<{widths[1]}}"]
        rest = [f"{c:>{w}}" for c, w in zip(cells[2:], widths[2:], strict=True)]
        return "  ".join(first + rest).rstrip()

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(c) for c in lines_data]
    if len(runs) >= 2:
        out.append("")
        out.append(
            f"{runs[0].name} vs {runs[1].name}: >1 means {runs[0].name} is better "
            "(↑ higher is better, ↓ lower is better)."
        )
    notes = missing_notes(runs, benches) + [f"{r.name}: {n}" for r in runs for n in r.notes]
    if notes:
        out.append("")
        out.append("notes (n/a reasons first):")
        out += [f"  {n}" for n in notes]
    return "\n".join(out)


def missing_notes(runs: list[BackendRun], benches: list[cat.Bench]) -> list[str]:
    notes = []
    for run in runs:
        if not run.available:
            notes.append(f"{run.name}: all n/a: {run.error}")
            continue
        for bench in benches:
            out = run.benches.get(bench.name)
            if out is None or out.status == "not run":
                reason = out.error if out and out.error else "not run"
                notes.append(f"{run.name} {bench.name}: {reason}")
            elif out.status == "error":
                notes.append(f"{run.name} {bench.name}: {out.error}")
    return notes
