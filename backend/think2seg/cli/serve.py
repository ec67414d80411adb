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
    add_model_options(p)
    p.set_defaults(run=run)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    server.run()
    return 0
