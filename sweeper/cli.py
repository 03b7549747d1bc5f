"""The ``sweep`` command: parse, configure logging, call one function, exit with its code.

Exit codes: 0 the command ran (also after SIGTERM); 1 Redis unreachable (or
another runtime failure); 2 bad configuration or usage; 130 stopped by SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from enqueue_client import EnqueueError

from . import display, operations
from .budget import Budget
from .errors import ConfigError, RedisUnavailable, SweeperError
from .logs import setup_logging
from .settings import Settings, load_settings

if TYPE_CHECKING:
    from .sweep import Sweep

EXIT_OK, EXIT_RUNTIME, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to print help)."""
    parser = argparse.ArgumentParser(
        prog="sweep",
        description="Generate queued AI images from Redis within a hard time budget.",
        epilog="Configuration comes from SWEEPER_* environment variables; see the README.",
    )
    parser.add_argument("--once", action="store_true", help="run one sweep, then exit")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="with --once: show what would be claimed, change nothing",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("demo", help="enqueue sample jobs into the embedded Redis and sweep them")
    serve = commands.add_parser("serve", help="long-running: sweep on SWEEPER_SCHEDULE or --every")
    serve.add_argument(
        "--every", help="sweep at this interval instead of the cron schedule: 30s, 2m"
    )
    serve.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="seconds a running sweep gets to land its calls after SIGTERM (default 10)",
    )
    commands.add_parser("doctor", help="check configuration, Redis, storage and the API key")
    commands.add_parser("status", help="pending, leased and failed counts, oldest pending age")
    inspect = commands.add_parser("inspect", help="show a job's record, result and attempts")
    inspect.add_argument("id")
    requeue = commands.add_parser("requeue", help="put failed jobs back, attempts reset")
    requeue.add_argument("ids", nargs="*", metavar="ID")
    requeue.add_argument("--all-failed", action="store_true", help="every id in the failed set")
    enqueue = commands.add_parser("enqueue", help="enqueue a job from the shell")
    enqueue.add_argument("--id", required=True, dest="job_id")
    source = enqueue.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="one image with this prompt")
    source.add_argument("--file", type=Path, help="a JSON record (CONTRACT section 1)")
    enqueue.add_argument("--key", default="image", help="image key (default: image)")
    enqueue.add_argument("--aspect-ratio")
    enqueue.add_argument("--count", type=int, default=1)
    enqueue.add_argument("--model")
    enqueue.add_argument("--priority", type=int, default=0)
    for sub in commands.choices.values():
        sub.add_argument("--json", action="store_true", help="print results as JSON")
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
        setup_logging(settings.log_level, settings.log_format, settings.secrets())
        if args.command is None:
            return _once(
                settings, Budget(settings.time_budget_seconds, started_at=budget_start), args
            )
        return COMMANDS[args.command](settings, args)
    except ConfigError as e:
        print(f"sweep: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except (RedisUnavailable, SweeperError) as e:
        print(f"sweep: {e}", file=sys.stderr)
        return EXIT_RUNTIME


def _once(settings: Settings, budget: Budget, args: argparse.Namespace) -> int:
    from .metrics import Metrics
    from .progress import follow
    from .runner import run_once, stop_on_signals

    if args.dry_run:
        return _dry_run(settings, args)
    settings.require_generator()
    metrics = Metrics()

    def on_start(sweep: Sweep) -> None:
        stop_on_signals(sweep)
        follow(sweep)

    summary = asyncio.run(run_once(settings, budget=budget, metrics=metrics, on_start=on_start))
    if settings.metrics_textfile:
        metrics.write_textfile(settings.metrics_textfile)
    if settings.metrics_pushgateway:
        metrics.push(settings.metrics_pushgateway, timeout=max(0.5, min(5.0, budget.remaining())))
    print(json.dumps(summary.as_dict()) if args.json else display.summary_line(summary))
    if summary.stopped_by == "SIGINT":
        return EXIT_INTERRUPTED  # what shells expect after Ctrl-C
    return EXIT_RUNTIME if summary.redis_error else EXIT_OK


@contextmanager
def _sync_redis(settings: Settings) -> Iterator[redis.Redis]:
    """A checked synchronous connection for the operator commands."""
    from .connection import redis_url
    from .settings import mask_url

    url, embedded = redis_url(settings)
    client = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5)
    try:
        try:
            client.ping()
        except (redis.RedisError, OSError) as e:
            raise RedisUnavailable(
                f"cannot reach Redis at {mask_url(url)}: {e}. Check SWEEPER_REDIS_URL."
            ) from None
        yield client
    finally:
        client.close()
        if embedded is not None and embedded.started_here:
            embedded.stop()


def _emit(args: argparse.Namespace, data: Any, view: Callable[[Any], str]) -> None:
    print(json.dumps(data, indent=2) if args.json else view(data))


def _dry_run(settings: Settings, args: argparse.Namespace) -> int:
    with _sync_redis(settings) as client:
        plan = operations.dry_run(client, settings.keys)
    _emit(args, plan, display.dry_run_table)
    return EXIT_OK


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from .scheduler import Server, parse_every

    every = parse_every(args.every) if args.every else None
    return asyncio.run(Server(settings, every=every, grace=args.grace).run())


def _doctor(settings: Settings, args: argparse.Namespace) -> int:
    from .doctor import run_checks

    checks = asyncio.run(run_checks(settings))
    _emit(args, checks, display.doctor_table)
    return EXIT_OK if all(c["ok"] for c in checks) else EXIT_RUNTIME


def _status(settings: Settings, args: argparse.Namespace) -> int:
    with _sync_redis(settings) as client:
        _emit(args, operations.status(client, settings.keys), display.status_table)
    return EXIT_OK


def _inspect(settings: Settings, args: argparse.Namespace) -> int:
    with _sync_redis(settings) as client:
        data = operations.inspect(client, settings.keys, args.id)
    _emit(args, data, display.inspect_view)
    return EXIT_OK if data["record"] is not None or data["result"] is not None else EXIT_RUNTIME


def _requeue(settings: Settings, args: argparse.Namespace) -> int:
    if not args.ids and not args.all_failed:
        raise ConfigError("requeue needs job ids or --all-failed")
    with _sync_redis(settings) as client:
        ids = list(args.ids) + (
            operations.failed_ids(client, settings.keys) if args.all_failed else []
        )
        outcome = operations.requeue(client, settings.keys, ids)
    _emit(
        args,
        outcome,
        lambda d: "\n".join(f"{k}: {v}" for k, v in d.items()) or "nothing to requeue",
    )
    return EXIT_OK if all(v == "requeued" for v in outcome.values()) else EXIT_RUNTIME


def _enqueue(settings: Settings, args: argparse.Namespace) -> int:
    priority = args.priority
    if args.file is not None:
        try:
            data = json.loads(args.file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read {args.file} as JSON: {e}") from None
        images, priority = data.get("images", []), int(data.get("priority", priority))
    else:
        image = {"key": args.key, "prompt": args.prompt, "count": args.count}
        image |= {k: v for k, v in (("aspectRatio", args.aspect_ratio), ("model", args.model)) if v}
        images = [image]
    with _sync_redis(settings) as client:
        try:
            record = operations.enqueue(client, settings.keys, args.job_id, images, priority)
        except EnqueueError as e:
            print(f"sweep: {e}", file=sys.stderr)
            return EXIT_CONFIG
    _emit(args, record, lambda r: f"enqueued {args.job_id}: {len(r['images'])} image(s)")
    return EXIT_OK


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "serve": _serve,
    "doctor": _doctor,
    "status": _status,
    "inspect": _inspect,
    "requeue": _requeue,
    "enqueue": _enqueue,
}

if __name__ == "__main__":
    raise SystemExit(main())
