"""`think2seg serve`: the local HTTP service the QGIS plugin talks to (docs/api.md)."""

from __future__ import annotations

import ipaddress
import logging
import sys


def add_parser(sub) -> None:
    from . import add_model_options

    p = sub.add_parser("serve", help="run the HTTP service for the QGIS plugin (127.0.0.1 only by default)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; anything but loopback exposes the GPU to the network (default 127.0.0.1)")
    p.add_argument("--token-file", default=None, help="where the bearer token lives (default ~/.config/think2seg/token)")
    p.add_argument("--max-upload-mb", type=int, default=512, help="largest accepted upload (default 512 MiB)")
    p.add_argument("--parent-pid", type=int, default=None,
                   help="exit when this process is gone (the QGIS that started the service), so a crash of it "
                        "never leaves the service holding the GPU")
    add_model_options(p)
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


def run(args) -> int:
    import uvicorn

    from ..pipeline import Pipeline
    from ..service.app import PipelineHolder, ServiceConfig, create_app
    from ..service.auth import load_or_create_token

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not _is_loopback(args.host):
        print(f"WARNING: listening on {args.host}: anyone who can reach this address and has the token can use "
              "this machine's GPU. Prefer 127.0.0.1 and an SSH tunnel.", file=sys.stderr)
    token, token_path = load_or_create_token(args.token_file)
    print(f"token file: {token_path}", flush=True)
    holder = PipelineHolder(
        lambda: Pipeline.from_pretrained(args.model, args.sam, args.sam_size, args.device),
        {"reasoner": args.model, "segmenter": str(args.sam)},
    )
    app = create_app(holder, ServiceConfig(token=token, max_upload_mb=args.max_upload_mb))
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="info", access_log=False)
    server = uvicorn.Server(config)

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

    import threading

    threading.Thread(target=announce, daemon=True).start()
    if args.parent_pid:
        def parent_gone():
            print(f"the parent process {args.parent_pid} is gone: stopping", flush=True)
            server.should_exit = True

        watch_parent(args.parent_pid, parent_gone)
    server.run()
    return 0
