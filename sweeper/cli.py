"""The ``sweep`` command: parse, configure logging, call one function, exit with its code.

Exit codes: 0 the command ran; 1 Redis unreachable (or another runtime
failure); 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from .budget import Budget
from .errors import ConfigError, RedisUnavailable, SweeperError
from .logs import setup_logging
from .settings import Settings, load_settings
from .sweep import SweepSummary

EXIT_OK, EXIT_RUNTIME, EXIT_CONFIG = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to print help)."""
    parser = argparse.ArgumentParser(
        prog="sweep",
        description="Generate queued AI images from Redis within a hard time budget.",
        epilog="Configuration comes from SWEEPER_* environment variables; see the README.",
    )
    parser.add_argument("--once", action="store_true", help="run one sweep, then exit")
    parser.add_argument("--json", action="store_true", help="print the run summary as JSON")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="enqueue sample jobs into the embedded Redis and sweep them once"
    )
    demo.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and ``python -m sweeper``."""
    budget_start = Budget.from_process_start(0).started_at  # the budget counts from process start
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None and not args.once:
        parser.print_help()
        return EXIT_OK
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(as_json=args.json)
        settings = load_settings()
        _configure_logging(settings)
        budget = Budget(settings.time_budget_seconds, started_at=budget_start)
        summary = _run_once(settings, budget)
    except ConfigError as e:
        print(f"sweep: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except RedisUnavailable as e:
        print(f"sweep: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    except SweeperError as e:
        print(f"sweep: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    print(json.dumps(summary.as_dict()) if args.json else describe(summary))
    return EXIT_OK


def _configure_logging(settings: Settings) -> None:
    setup_logging(settings.log_level, settings.log_format, settings.secrets())


def _run_once(settings: Settings, budget: Budget) -> SweepSummary:
    from .runner import run_once

    return asyncio.run(run_once(settings, budget=budget))


def describe(summary: SweepSummary) -> str:
    """One human line for the end of a run."""
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
    return text


if __name__ == "__main__":
    raise SystemExit(main())
