"""Command line, in the style of Prometheus exporters (--web.listen-address, --config.file, ...)."""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import signal
import sys
import threading
import time

from exporter import __version__
from exporter.config import DEFAULT_LISTEN_ADDRESS, ConfigError, load_file
from exporter.web.limits import MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT

LOG_LEVELS = ("debug", "info", "warn", "error")
log = logging.getLogger("exporter")


def _command_module(command: str):
    """exporter.estimate, report, report_team or prices_export, imported only when that command
    runs: `run` never loads them (tests/test_startup_imports.py)."""
    return importlib.import_module(f"exporter.{command}")


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; `command` (the one asked for) decides which commands' own modules are loaded
    for their arguments."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(
        prog="llm-cost-exporter", formatter_class=fmt,
        description="Prometheus exporter: what a million tokens really costs to self-host, against the API.")
    parser.add_argument("--version", action="version", version=f"llm-cost-exporter {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def common(sub):
        sub.add_argument("--web.listen-address", dest="listen_address", default=DEFAULT_LISTEN_ADDRESS,
                         help="address to listen on for the web interface and telemetry")
        sub.add_argument("--web.config.file", dest="web_config_file", default=None,
                         help="web config file for TLS and basic auth, in the Prometheus exporter-toolkit format "
                              "(docs/security.md); re-read when it or its certificates change")
        sub.add_argument("--log.level", dest="log_level", choices=LOG_LEVELS, default="info", help="log level")

    run = commands.add_parser("run", formatter_class=fmt, help="run the exporter on a GPU node")
    run.add_argument("--config.file", dest="config_file", default=None,
                     help="YAML configuration file (docs/configuration.md); LLMCOST_* variables override it")
    run.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics", help="path under which to expose metrics")
    run.add_argument("--web.max-connections", dest="max_connections", type=_positive_int, default=MAX_CONNECTIONS,
                     help="connections served at once; more are closed at accept")
    run.add_argument("--web.max-connections-per-client", dest="max_connections_per_client", type=_positive_int,
                     default=MAX_CONNECTIONS_PER_CLIENT,
                     help="connections served at once from one client address, at most --web.max-connections "
                          "(docs/security.md)")
    run.add_argument("--storage.path", dest="storage_path", default=None,
                     help="directory for the persisted totals, so a restart continues them and accrues its downtime "
                          "(docs/reliability.md); none: totals start at 0 on every start")
    run.add_argument("--storage.interval", dest="storage_interval", type=_seconds, default="30s",
                     help="how often the totals are written (and once at shutdown)")
    run.add_argument("--storage.max-gap", dest="storage_max_gap", type=_seconds, default="1h",
                     help="the longest downtime accrued as billed after a restart (a longer one may have been a "
                          "stopped node)")
    common(run)

    demo = commands.add_parser("demo", formatter_class=fmt,
                               help="run a simulated GPU node with vLLM and SGLang workloads, the exporter scraping them")
    demo.add_argument("--demo.speed", dest="speed", type=float, default=60.0,
                      help="time acceleration: simulated seconds per real second (1 = real time)")
    demo.add_argument("--demo.duration", dest="duration", type=float, default=0.0,
                      help="stop after this many real seconds (0 = run until Ctrl-C)")
    demo.add_argument("--demo.summary-interval", dest="summary_every", type=float, default=5.0,
                      help="seconds between the terminal summary lines")
    demo.add_argument("--demo.constant-load", dest="constant_load", type=float, default=None,
                      help="pin every engine's load (0-1) instead of the quiet/busy/burst pattern (for tests)")
    common(demo)

    estimate_cmd = commands.add_parser("estimate", formatter_class=fmt, help="what-if cost calculator over a scenario file")
    report_cmd = commands.add_parser("report", formatter_class=fmt,
                                     help="the real figures of a past period, from Prometheus")
    prices_cmd = commands.add_parser("prices", formatter_class=fmt, help="our $/token where gateways read prices")
    prices_sub = prices_cmd.add_subparsers(dest="prices_command", metavar="PRICES_COMMAND", required=True)
    prices_export_cmd = prices_sub.add_parser(
        "export", formatter_class=fmt, help="write the trailing-window $/token per model for LiteLLM, Langfuse or OpenLIT")
    # Each command's module (and its arguments) only when that command runs.
    lazy = {"estimate": [("estimate", estimate_cmd)],
            "report": [("report", report_cmd), ("report_team", report_cmd)],  # report_team: --by=team
            "prices": [("prices_export", prices_export_cmd)]}
    for name, sub in lazy.get(command or "", []):
        _command_module(name).add_arguments(sub)
    catalog_cmd = commands.add_parser("catalog", formatter_class=fmt, help="price catalog tools")
    catalog_sub = catalog_cmd.add_subparsers(dest="catalog_command", metavar="CATALOG_COMMAND", required=True)
    litellm = catalog_sub.add_parser("import-litellm", formatter_class=fmt, add_help=False,  # --help goes to the importer
                                     help="convert LiteLLM's model_prices_and_context_window.json into an API catalog")
    litellm.add_argument("args", nargs=argparse.REMAINDER, help="FILE [--output PATH] [--provider NAME ...]")  # for --help
    fetch_spot = catalog_sub.add_parser("fetch-spot", formatter_class=fmt, add_help=False,
                                        help="write a spot price file from public price data (no credentials)")
    fetch_spot.add_argument("args", nargs=argparse.REMAINDER, help="--azure-sku SKU --azure-region REGION [--output PATH]")
    return parser


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"got {text!r}, allowed: a whole number >= 1")
    return int(text)


def _seconds(text: str) -> float:
    from exporter.units import parse_duration

    try:
        return parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 5m, 1h)") from None


class OneLineFormatter(logging.Formatter):
    """logfmt lines that no value from outside can break: a CR or LF anywhere in a record (a pod
    annotation, an engine's error text) is written as \\r or \\n, so it can never start a line of
    its own and forge one."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\r", "\\r").replace("\n", "\\n")


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s"))
    logging.basicConfig(level={"warn": logging.WARNING}.get(level, getattr(logging, level.upper())),
                        handlers=[handler])
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # it logs every job run at INFO


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["catalog", "import-litellm"]:  # the importer parses its own arguments, --help included
        from exporter.catalog import litellm

        return litellm.main(argv[2:])
    if argv[:2] == ["catalog", "fetch-spot"]:
        from exporter import spotfetch

        return spotfetch.main(argv[2:])
    parser = _parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "report" and args.by == "team":
        return _command_module("report_team").run(args)
    if args.command in ("estimate", "report"):
        return _command_module(args.command).run(args)
    if args.command == "prices":
        return _command_module("prices_export").run(args)
    _setup_logging(args.log_level)
    if args.command == "demo":
        return _demo(args)
    return _run(args)


def _web_config(path: str | None):
    """The WebConfigWatcher for --web.config.file, None without one, 2 (printed) if invalid."""
    if not path:
        return None
    from exporter.webconfig import WebConfigError, WebConfigWatcher

    try:
        watcher = WebConfigWatcher(path)
    except WebConfigError as err:
        print(f"llm-cost-exporter: web config error: {err}", file=sys.stderr)
        return 2
    if watcher.current.auth and watcher.current.tls is None:
        log.warning("basic auth without TLS: passwords cross the network in clear text; set tls_server_config")
    return watcher


SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def block_signals() -> None:
    """Hold SIGINT, SIGTERM and SIGHUP for wait_for_signal(). Call before any thread starts: the
    threads inherit the mask, so whichever thread the kernel picks, the signal waits for the main
    thread's sigwait (a Python handler would run only when the main thread next runs bytecode)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)


def wait_for_signal(timeout: float | None = None, on_sighup=None) -> bool:
    """Sleep until SIGINT or SIGTERM (True) or the timeout (False), without waking up meanwhile.
    SIGHUP calls on_sighup() (the config reload, as for Prometheus) and goes on waiting."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if deadline is None:
            received = signal.sigwait(SIGNALS)
        else:
            info = signal.sigtimedwait(SIGNALS, max(deadline - time.monotonic(), 0.0))
            if info is None:
                return False
            received = info.si_signo
        if received != signal.SIGHUP:
            return True
        if on_sighup is not None:
            on_sighup()


def _exit_promptly(code: int) -> int:
    """After a clean shutdown, make sure the process ends within half a second: an engine read
    still in flight in a worker thread (up to its timeout) would otherwise hold interpreter exit,
    because concurrent.futures joins its workers there. Everything worth keeping is written by now."""
    timer = threading.Timer(0.5, os._exit, args=(code,))
    timer.daemon = True
    timer.start()
    return code


def _run(args) -> int:
    block_signals()  # before anything starts a thread
    if args.max_connections_per_client > args.max_connections:
        print(f"llm-cost-exporter: --web.max-connections-per-client: got {args.max_connections_per_client}, allowed: "
              f"at most --web.max-connections ({args.max_connections})", file=sys.stderr)
        return 2
    try:
        config = load_file(args.config_file)
    except ConfigError as err:
        print(f"llm-cost-exporter: config error: {err}", file=sys.stderr)
        return 2
    web_config = _web_config(args.web_config_file)
    if web_config == 2:
        return 2
    from exporter.app import Exporter
    from exporter.web import WebServer

    storage = None
    if args.storage_path:
        from exporter.storage import Storage

        storage = Storage(args.storage_path, args.storage_interval, args.storage_max_gap)
    exporter = Exporter(config, storage=storage)
    try:
        web = WebServer(exporter, args.listen_address, args.telemetry_path, web_config,
                        max_connections=args.max_connections, max_connections_per_client=args.max_connections_per_client)
    except (OSError, ValueError) as err:
        print(f"llm-cost-exporter: cannot listen on {args.listen_address}: {err}", file=sys.stderr)
        return 1
    # What startup built (modules, config, catalog) lives as long as the process: frozen out of the
    # cyclic collector's generations, a collection no longer walks it on a scrape (bench/README.md).
    gc.collect()
    gc.freeze()
    exporter.start()
    web.start()
    if storage is not None:
        storage.start()
    log.info("listening address=%s telemetry_path=%s tls=%s basic_auth=%s engines=%d gpu_backend=%s mode=%s",
             args.listen_address, args.telemetry_path, web.tls, bool(web_config and web_config.current.auth),
             len(config.engines), config.gpu.backend, config.pricing.mode)
    wait_for_signal(on_sighup=exporter.reload_config)
    web.stop()
    exporter.stop()
    if storage is not None:
        storage.stop()
    log.info("stopped")
    return _exit_promptly(0)


def _demo(args) -> int:
    from exporter.demo.node import INSTANCE_HOURLY, INSTANCE_TYPE, PRODUCT, Demo, describe_servers

    block_signals()  # before anything starts a thread
    web_config = _web_config(args.web_config_file)
    if web_config == 2:
        return 2
    try:
        demo = Demo(args.listen_address, args.speed, constant_load=args.constant_load, web_config=web_config)
    except OSError as err:
        print(f"llm-cost-exporter demo: cannot listen on {args.listen_address}: {err}", file=sys.stderr)
        return 1
    demo.start()
    port, scheme = demo.web.port, "https" if demo.web.tls else "http"
    print(f"llm-cost-exporter demo: 4 simulated {PRODUCT} GPUs ({INSTANCE_TYPE} at ${INSTANCE_HOURLY}/h), "
          f"{describe_servers()}, time x{args.speed:g}", flush=True)
    print(f"  metrics:  {scheme}://localhost:{port}/metrics\n  summary:  {scheme}://localhost:{port}/\n"
          f"  engines:  {', '.join(demo.engine_lines())}\nCtrl-C to stop.", flush=True)
    deadline = time.monotonic() + args.duration if args.duration > 0 else None
    while not wait_for_signal(args.summary_every):
        print(demo.summary_line(), flush=True)
        if deadline and time.monotonic() >= deadline:
            break
    demo.stop()
    print("demo stopped", file=sys.stderr, flush=True)
    return _exit_promptly(0)
