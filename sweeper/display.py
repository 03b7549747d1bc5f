"""Human-readable views of command results (``--json`` prints the data instead)."""

from __future__ import annotations

import json
from typing import Any

from .summary import SweepSummary


def summary_line(summary: SweepSummary) -> str:
    """One line for the end of a run."""
    text = (
        f"sweep {summary.run_id[:8]}: {summary.jobs_claimed} jobs claimed, "
        f"{summary.images_stored} images stored, {summary.images_failed} failed, "
        f"{summary.images_deferred} left for later; jobs {summary.jobs_completed} completed, "
        f"{summary.jobs_partial} partial, {summary.jobs_failed} failed, "
        f"{summary.jobs_quarantined} quarantined, {summary.jobs_released} released; "
        f"{summary.api_calls} calls in {summary.duration_seconds:.1f}s"
    )
    if summary.budget_exhausted:
        text += " (time budget reached)"
    if summary.stopped_by:
        text += f" (stopped: {summary.stopped_by})"
    if summary.redis_error:
        text += f" (Redis failed: {summary.redis_error})"
    return text


def status_table(data: dict[str, Any]) -> str:
    """``sweep status`` as aligned rows."""
    age = data["oldest_pending_age_seconds"]
    rows = [
        ("pending", str(data["pending"])),
        ("in progress (leased)", str(data["leased"])),
        ("failed", str(data["failed"])),
        ("oldest pending", "-" if age is None else _age(age)),
    ]
    if data["oldest_sampled"] and data["oldest_sampled"] < data["pending"]:
        rows[-1] = (rows[-1][0], f"{rows[-1][1]} (of {data['oldest_sampled']} sampled)")
    runs = data.get("recent_runs") or []
    if not runs:
        rows.append(("last runs", "never"))
    for n, run in enumerate(runs[:5]):
        rows.append(("last runs" if n == 0 else "", _run_line(run)))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}".rstrip() for name, value in rows)


def _run_line(run: dict[str, Any]) -> str:
    line = (
        f"{run.get('started_at', '?')}  {run.get('duration_seconds', 0):6.1f}s  "
        f"{run.get('jobs_claimed', 0)} claimed, {run.get('images_stored', 0)} stored, "
        f"{run.get('images_failed', 0)} failed, {run.get('jobs_quarantined', 0)} quarantined"
    )
    flags = (
        ("budget_exhausted", "budget reached"),
        ("stopped_by", "stopped"),
        ("redis_error", "Redis failed"),
    )
    for flag, text in flags:
        if run.get(flag):
            line += f" ({text})"
    return line


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def inspect_view(data: dict[str, Any]) -> str:
    """``sweep inspect`` as labelled sections."""
    where = "pending" if data["pending"] else ("failed set" if data["failed_set"] else "not queued")
    lines = [f"job {data['id']}: {where}"]
    if data["lease_seconds_left"] is not None:
        lines.append(f"leased by a sweep, {data['lease_seconds_left']}s left on the lease")
    if data["attempts"]:
        lines.append(
            "attempts: " + ", ".join(f"{k}={v}" for k, v in sorted(data["attempts"].items()))
        )
    lines.append("record:")
    lines.append(_indent(data["record"]))
    lines.append("result:")
    lines.append(_indent(data["result"]))
    return "\n".join(lines)


def _indent(value: Any) -> str:
    if value is None:
        return "  (none)"
    text = json.dumps(value, indent=2) if not isinstance(value, str) else value
    return "\n".join("  " + line for line in text.splitlines())


def dry_run_table(plan: list[dict[str, Any]]) -> str:
    """``sweep --once --dry-run`` as a table in claim order."""
    if not plan:
        return "nothing pending"
    header = ("id", "priority", "images", "action")
    rows = [(str(p["id"]), str(p["priority"]), str(p["images"]), str(p["action"])) for p in plan]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    lines = [
        f"{header[0]:<{widths[0]}}  {header[1]:>{widths[1]}}  {header[2]:>{widths[2]}}  {header[3]}"
    ]
    lines += [
        f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}" for r in rows
    ]
    return "\n".join(lines)


def doctor_table(checks: list[dict[str, Any]]) -> str:
    """``sweep doctor``: one line per check."""
    width = max(len(c["check"]) for c in checks)
    lines = [
        f"{'ok  ' if c['ok'] else 'FAIL'}  {c['check']:<{width}}  {c['detail']}" for c in checks
    ]
    verdict = "all good" if all(c["ok"] for c in checks) else "something needs fixing (see FAIL)"
    return "\n".join([*lines, verdict])
