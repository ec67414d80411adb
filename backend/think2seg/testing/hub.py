"""A stand-in for the Hugging Face hub on loopback, for tests of the real first-run download.

It answers the routes `huggingface_hub` (2.x) calls, as the real hub shapes them:

- ``GET /api/models/ORG/NAME[/revision/REV]`` (``?blobs=true``: sizes, blob ids, LFS sha256): the revision info;
- ``GET /api/models/ORG/NAME/tree/REV[/PATH]?recursive=...``: the tree listing, paginated by cursor through a
  ``Link: <...>; rel="next"`` header (``page_size`` entries a page, 1000 on the real hub);
- ``HEAD``/``GET /ORG/NAME/resolve/REV/FILE``: ``ETag`` (the git blob id; for LFS files the content's sha256,
  also as ``X-Linked-Etag``), ``X-Repo-Commit``, ``Content-Length`` (and ``X-Linked-Size``), ``Range`` (206).

Files at least ``lfs_threshold`` bytes are LFS files, as on the hub. Started with ``HF_ENDPOINT`` set to its
``url`` the real client, the real cache and our code run against it: it stands in for the remote service only.
What tests steer: ``served`` (bytes sent per (repo, file)), ``requests`` (method and path of each request),
``fail[repo] = 404 | 401 | 500`` (missing, gated, broken), ``cut[(repo, file)] = N`` (the next GET of that file
sends N bytes of its body, then closes the socket), ``drop[...] = N`` (the same on every GET),
``hold[(repo, file)] = N`` (sends N bytes, then waits until
``release()``: a test kills the client meanwhile). Standard library only.

``python -m think2seg.testing.hub --repo ORG/NAME=FOLDER [--file ORG/NAME:FILE=PATH]`` serves from a shell.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

CHUNK = 1 << 16


@dataclass
class HubFile:
    path: Path
    size: int
    blob_id: str  # git's blob sha1
    sha256: str | None  # LFS files only


def _git_blob_id(path: Path) -> str:
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class StandInHub:
    def __init__(self, lfs_threshold: int = 1 << 20, page_size: int = 1000):
        self.lfs_threshold = lfs_threshold
        self.page_size = page_size
        self.repos: dict[str, dict[str, HubFile]] = {}
        self.commits: dict[str, str] = {}
        self.served: Counter = Counter()
        self.requests: list[tuple[str, str]] = []
        self.ranges: list[tuple[tuple[str, str], str]] = []  # (repo, file), the Range header of a GET
        self.fail: dict[str, int] = {}
        self.cut: dict[tuple[str, str], int] = {}
        self.drop: dict[tuple[str, str], int] = {}  # like cut, on every GET of that file
        self.hold: dict[tuple[str, str], int] = {}
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- content ---------------------------------------------------------------------------------------------
    def add_repo(
        self, repo_id: str, folder: str | os.PathLike | None = None, files: dict[str, str | os.PathLike] | None = None
    ) -> None:
        """Serve every file of `folder` (names relative to it) and the `files` given as {name in repo: path}."""
        entries: dict[str, Path] = {}
        if folder is not None:
            root = Path(folder)
            entries.update({p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()})
        entries.update({name: Path(p) for name, p in (files or {}).items()})
        repo = self.repos.setdefault(repo_id, {})
        for name, path in entries.items():
            size = path.stat().st_size
            repo[name] = HubFile(path, size, _git_blob_id(path), _sha256(path) if size >= self.lfs_threshold else None)
        digest = hashlib.sha1(repo_id.encode())
        for name in sorted(repo):
            digest.update(f"{name}\0{repo[name].blob_id}\0".encode())
        self.commits[repo_id] = digest.hexdigest()

    def repo_size(self, repo_id: str) -> int:
        return sum(f.size for f in self.repos[repo_id].values())

    def release(self) -> None:
        """Let held responses go on (and no later one wait)."""
        self._released.set()

    # --- lifetime --------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "start() the hub first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> StandInHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="stand-in-hub", daemon=True).start()
        return self

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> StandInHub:
        return self.start() if self._server is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    hub: StandInHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    # --- helpers ---------------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, data, headers: dict | None = None, head: bool = False) -> None:
        self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})}, head)

    def _error(self, status: int, code: str, message: str, head: bool) -> None:
        self._send(
            status,
            json.dumps({"error": message}).encode(),
            {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message},
            head,
        )

    def _repo_or_error(self, repo_id: str, head: bool) -> dict[str, HubFile] | None:
        hub = self.hub
        status = hub.fail.get(repo_id)
        if status == 401:
            self._error(
                401,
                "GatedRepo",
                f"Access to model {repo_id} is restricted. You must have access to it "
                "and be authenticated to access it. Please log in.",
                head,
            )
            return None
        if status == 500:
            self._error(500, "", "Internal Error - We're working hard to fix this as soon as possible!", head)
            return None
        if status == 404 or repo_id not in hub.repos:
            self._error(404, "RepoNotFound", "Repository not found", head)
            return None
        return hub.repos[repo_id]

    def _route(self, head: bool) -> None:
        hub = self.hub
        split = urlsplit(self.path)
        path, query = unquote(split.path), parse_qs(split.query)
        with hub._lock:
            hub.requests.append((self.command, self.path))
        parts = path.strip("/").split("/")
        if len(parts) >= 3 and parts[0] == "api" and parts[1] == "models":
            repo_id = "/".join(parts[2:4])
            rest = parts[4:]
            repo = self._repo_or_error(repo_id, head)
            if repo is None:
                return
            if not rest or rest[0] == "revision":
                return self._info(repo_id, repo, head)
            if rest[0] == "tree":
                return self._tree(repo_id, repo, "/".join(rest[2:]), query, head)
        elif len(parts) >= 5 and parts[2] == "resolve":
            repo_id = "/".join(parts[:2])
            repo = self._repo_or_error(repo_id, head)
            if repo is None:
                return
            name = "/".join(parts[4:])
            if name not in repo:
                return self._error(404, "EntryNotFound", f"{name} does not exist in {repo_id}", head)
            return self._file(repo_id, name, repo[name], head)
        self._error(404, "", f"no route {path}", head)

    def _info(self, repo_id: str, repo: dict[str, HubFile], head: bool) -> None:
        siblings = []
        for name, f in sorted(repo.items()):
            sib = {"rfilename": name, "size": f.size, "blobId": f.blob_id}
            if f.sha256:
                sib["lfs"] = {"size": f.size, "sha256": f.sha256, "pointerSize": 134}
            siblings.append(sib)
        self._json(
            {
                "id": repo_id,
                "modelId": repo_id,
                "sha": self.hub.commits[repo_id],
                "private": False,
                "gated": False,
                "disabled": False,
                "siblings": siblings,
                "usedStorage": sum(f.size for f in repo.values()),
            },
            head=head,
        )

    def _tree(self, repo_id: str, repo: dict[str, HubFile], under: str, query: dict, head: bool) -> None:
        hub = self.hub
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        prefix = f"{under.strip('/')}/" if under.strip("/") else ""
        entries, folders = [], set()
        for name, f in sorted(repo.items()):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/", 1)[0])
                continue
            if recursive:
                bits = rest.split("/")[:-1]
                folders.update(prefix + "/".join(bits[: i + 1]) for i in range(len(bits)))
            entry = {"type": "file", "oid": f.blob_id, "size": f.size, "path": name}
            if f.sha256:
                entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
            entries.append(entry)
        entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d} for d in sorted(folders)]
        start = int(query.get("cursor", ["0"])[0])
        page = entries[start : start + hub.page_size]
        headers = {}
        if start + hub.page_size < len(entries):
            base = f"{hub.url}{urlsplit(self.path).path}"
            headers["Link"] = f'<{base}?recursive={str(recursive).lower()}&cursor={start + hub.page_size}>; rel="next"'
        self._json(page, headers, head)

    def _file(self, repo_id: str, name: str, f: HubFile, head: bool) -> None:
        hub = self.hub
        etag = f.sha256 or f.blob_id
        headers = {
            "ETag": f'"{etag}"',
            "X-Repo-Commit": hub.commits[repo_id],
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if f.sha256:
            headers |= {"X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(f.size)}
        start, end = 0, f.size - 1
        status = 200
        rng = self.headers.get("Range")
        if rng and not head:
            with hub._lock:
                hub.ranges.append(((repo_id, name), rng))
        if rng and rng.startswith("bytes="):
            first, _, last = rng[len("bytes=") :].partition("-")
            start = int(first) if first else max(0, f.size - int(last))
            end = int(last) if (first and last) else f.size - 1
            if start >= f.size:
                return self._send(416, b"", {"Content-Range": f"bytes */{f.size}"}, head)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{f.size}"
        length = end - start + 1
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if head:
            return
        key = (repo_id, name)
        with hub._lock:
            cut = hub.cut.pop(key, hub.drop.get(key))
            hold = None if hub._released.is_set() else hub.hold.pop(key, None)
        stop_after = cut if cut is not None else hold
        sent = 0
        with open(f.path, "rb") as src:
            src.seek(start)
            while sent < length:
                n = min(CHUNK, length - sent)
                if stop_after is not None:
                    n = min(n, stop_after - sent)
                    if n <= 0:
                        break
                chunk = src.read(n)
                try:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                except OSError:
                    return
                sent += len(chunk)
                with hub._lock:
                    hub.served[key] += len(chunk)
        if stop_after is not None and sent < length:
            if hold is not None and cut is None:
                hub._released.wait()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def hub_url_for(hub: StandInHub, repo_id: str, name: str) -> str:
    return f"{hub.url}/{repo_id}/resolve/main/{quote(name)}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", action="append", default=[], metavar="ORG/NAME=FOLDER")
    ap.add_argument("--file", action="append", default=[], metavar="ORG/NAME:FILE=PATH")
    args = ap.parse_args(argv)
    hub = StandInHub()
    for spec in args.repo:
        repo_id, folder = spec.split("=", 1)
        hub.add_repo(repo_id, folder)
    for spec in args.file:
        left, path = spec.split("=", 1)
        repo_id, name = left.split(":", 1)
        hub.add_repo(repo_id, files={name: path})
    hub.start()
    print(f"HF_ENDPOINT={hub.url}", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
