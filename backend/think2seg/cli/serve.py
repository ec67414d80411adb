"""`think2seg serve`: the local HTTP service the QGIS plugin talks to (docs/api.md)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..service.limits import Limits


def add_parser(sub) -> None:
    from ..service.limits import Limits
    from . import add_model_options

    p = sub.add_parser("serve", help="run the HTTP service for the QGIS plugin (127.0.0.1 only by default)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; anything but loopback exposes the GPU to the network (default 127.0.0.1)",
    )
    p.add_argument(
        "--token-file", default=None, help="where the bearer token lives (default ~/.config/think2seg/token)"
    )
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host that is not loopback (put a TLS reverse proxy in front: see the README)",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a name clients may send in the Host header besides localhost and --host (a proxy's name)",
    )
    p.add_argument(
        "--work-dir",
        default=None,
        help="folder for uploads and job state (default: beside the token file, in work/); "
        "folders left by a killed backend are removed at start",
    )
    limits = Limits()
    g = p.add_argument_group("limits (docs/api.md)")
    g.add_argument(
        "--max-upload-mb",
        type=int,
        default=limits.max_upload_mb,
        help=f"largest accepted upload (default {limits.max_upload_mb} MiB)",
    )
    g.add_argument(
        "--max-queue",
        type=int,
        default=limits.max_waiting,
        help=f"requests and jobs that may wait; beyond it 429 (default {limits.max_waiting})",
    )
    g.add_argument(
        "--max-tiles", type=int, default=limits.max_tiles, help=f"tiles in one job (default {limits.max_tiles})"
    )
    g.add_argument(
        "--max-source-pixels",
        type=int,
        default=limits.max_source_pixels,
        help=f"raster pixels one read may cover (default {limits.max_source_pixels})",
    )
    g.add_argument(
        "--max-read-pixels",
        type=int,
        default=limits.max_read_pixels,
        help=f"pixels one read may produce (default {limits.max_read_pixels})",
    )
    g.add_argument(
        "--header-timeout",
        type=float,
        default=20.0,
        help="seconds a client may take to send a request's headers; then it is cut (default 20)",
    )
    g.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        help="seconds a client may pause while sending a body; then 408 and it is cut (default 30)",
    )
    from ..views import DEFAULT_MAX_VIEW_BYTES, DEFAULT_MAX_VIEWS, DEFAULT_VIEW_STORE_BYTES

    g = p.add_argument_group("refine (POST /v1/views/{view_id}/refine)")
    g.add_argument(
        "--max-views",
        type=int,
        default=DEFAULT_MAX_VIEWS,
        help=f"answers kept for refine; the least recently used goes first (default {DEFAULT_MAX_VIEWS})",
    )
    g.add_argument(
        "--max-view-mb",
        type=int,
        default=DEFAULT_MAX_VIEW_BYTES >> 20,
        help="pixels (a tiled answer: its raster file) kept for refine, in MiB "
        f"(default {DEFAULT_MAX_VIEW_BYTES >> 20}); the latest answer is always kept",
    )
    g.add_argument(
        "--view-store-mb",
        type=int,
        default=DEFAULT_VIEW_STORE_BYTES >> 20,
        help="answers' views kept on disk in the work folder (kept-views), in MiB, so that results can be "
        f"refined after a restart (default {DEFAULT_VIEW_STORE_BYTES >> 20}; 0 keeps none); least recently used out",
    )
    p.add_argument(
        "--embedding-cache-mb",
        type=int,
        default=None,
        help="SAM2 image embeddings kept for reuse by a second query or a refine, in MiB (default: on a GPU "
        "sized from its free memory after the models, 256 on the CPU; 0 keeps only the current one)",
    )
    p.add_argument(
        "--view-cache-mb",
        type=int,
        default=None,
        help="the reasoner's vision outputs kept for questions asked again on a view, in MiB (default: on a GPU "
        "sized from its free memory after the models, 512 on the CPU)",
    )
    p.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="exit when this process is gone (the QGIS that started the service), so a crash of it "
        "never leaves the service holding the GPU",
    )
    add_model_options(p)
    # Benchmarks and tests only (scripts/gpu_check.py scripts every answer of random weights with
    # think2seg.testing.scripted:script_answers=N): MODULE:FUNCTION[=ARG], called as FUNCTION(pipeline[, ARG])
    # once the models are loaded. Hidden: no use with real weights.
    p.add_argument("--pipeline-hook", default=None, help=argparse.SUPPRESS)
    p.set_defaults(run=run)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def process_alive(pid: int) -> bool:
    """Whether ``pid`` still runs (POSIX: signal 0; Windows: a handle and its exit code, never os.kill)."""
    if sys.platform == "win32":
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watch_parent(pid: int, on_gone, interval: float = 1.0) -> None:
    """Call ``on_gone`` once ``pid`` has exited (or this process was re-parented away from it)."""
    import os
    import threading
    import time

    def watch():
        while process_alive(pid) and (sys.platform == "win32" or os.getppid() == pid):
            time.sleep(interval)
        on_gone()

    threading.Thread(target=watch, name="think2seg-parent-watch", daemon=True).start()


def check_args(args) -> Limits:
    from ..errors import BadInput
    from ..service.limits import Limits

    if not _is_loopback(args.host) and not args.allow_remote:
        raise BadInput(
            f"--host {args.host} would serve plain HTTP to the network, token included. Keep 127.0.0.1 "
            "and use an SSH tunnel, or put a TLS reverse proxy in front and add --allow-remote "
            "(see the README).",
            code="bad_host",
        )
    flags = {
        "max_upload_mb": ("--max-upload-mb", args.max_upload_mb),
        "max_waiting": ("--max-queue", args.max_queue),
        "max_tiles": ("--max-tiles", args.max_tiles),
        "max_source_pixels": ("--max-source-pixels", args.max_source_pixels),
        "max_read_pixels": ("--max-read-pixels", args.max_read_pixels),
    }
    views = [("--max-views", args.max_views), ("--max-view-mb", args.max_view_mb)]
    for flag, value in [*flags.values(), *views]:
        if value < 1:
            raise BadInput(f"{flag} must be at least 1 (got {value}).", code="bad_options")
    if args.view_store_mb < 0:
        raise BadInput(f"--view-store-mb must be 0 or more (got {args.view_store_mb}).", code="bad_options")
    for flag, value in (("--header-timeout", args.header_timeout), ("--body-timeout", args.body_timeout)):
        if not value > 0:
            raise BadInput(f"{flag} must be a positive number of seconds (got {value}).", code="bad_options")
    values = {name: value for name, (_, value) in flags.items()}
    return Limits(**values)


def bind(host: str, port: int):
    """The listening socket, bound before anything else starts: a busy port is a sentence and exit 2 (uvicorn
    would print its own line and exit 3, outside the exit codes the CLI promises)."""
    import errno
    import socket

    from ..errors import BadInput

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise BadInput(
                f"Port {port} on {host} is in use (another backend, or another program): stop it, or "
                "start with another --port.",
                code="port_in_use",
            ) from None
        raise BadInput(
            f"Cannot listen on {host}:{port} ({e.strerror}): give another --host or --port.", code="bad_host"
        ) from None
    sock.set_inheritable(True)
    return sock


def run(args) -> int:
    import signal
    import threading

    import uvicorn

    from ..service.app import PipelineHolder, ServiceConfig, create_app
    from ..service.auth import load_or_create_token

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limits = check_args(args)
    sock = bind(args.host, args.port)
    if not _is_loopback(args.host):
        print(
            f"WARNING: listening on {args.host}: serve it through a TLS reverse proxy only; anyone who can "
            "reach this address and has the token can use this machine's GPU.",
            file=sys.stderr,
        )
    token, token_path = load_or_create_token(args.token_file)
    print(f"token file: {token_path}", flush=True)
    from . import pipeline_loader

    load = pipeline_loader(args)

    def load_scripted():
        pipeline = load()  # its caches sized as set, or from the GPU's free memory (cli.sized_caches)
        if args.pipeline_hook:
            import importlib

            target, _, arg = args.pipeline_hook.partition("=")
            module, _, function = target.partition(":")
            hook = getattr(importlib.import_module(module), function)
            hook(pipeline, arg) if arg else hook(pipeline)
        return pipeline

    holder = PipelineHolder(load_scripted, {"reasoner": args.model, "segmenter": str(args.sam)})
    holder.caches = load.caches  # filled once the models are loaded: /v1/health shows it
    work_dir = args.work_dir or str(token_path.parent / "work")
    app = create_app(
        holder,
        ServiceConfig(
            token=token,
            work_dir=work_dir,
            limits=limits,
            host=args.host,
            allowed_hosts=tuple(args.allowed_host),
            max_views=args.max_views,
            max_view_bytes=args.max_view_mb << 20,
            view_store_bytes=args.view_store_mb << 20,
            body_timeout_s=args.body_timeout,
        ),
    )
    from ..service.protocol import protocol_with

    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level="info", access_log=False, http=protocol_with(args.header_timeout)
    )
    service = app.state.service

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            if not self.should_exit:  # the first signal: stop taking work (in a thread: never lock in a handler)
                threading.Thread(target=service.begin_stop, args=(signal.Signals(sig).name,), daemon=True).start()
            super().handle_exit(sig, frame)

    server = Server(config)

    def announce():
        # "ready" means listening AND models loaded: a client may send work right after this line.
        import time

        while not server.started:
            time.sleep(0.05)
        print(f"listening on http://{args.host}:{args.port} (loading models)", flush=True)
        holder.load()
        if holder.error:
            print(f"models failed to load: {holder.error.message}", flush=True)
        else:
            print(f"ready on http://{args.host}:{args.port}", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    if args.parent_pid:

        def parent_gone():
            print(f"the parent process {args.parent_pid} is gone: stopping", flush=True)
            service.begin_stop("parent gone")
            server.should_exit = True

        watch_parent(args.parent_pid, parent_gone)
    server.run(sockets=[sock])
    return 0
