"""The bearer token: generated on first start, stored mode 0600 where the plugin can read it."""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path

from ..errors import BadInput

log = logging.getLogger("think2seg.service")


def default_token_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "think2seg" / "token"


def load_or_create_token(path: str | os.PathLike | None = None) -> tuple[str, Path]:
    """Read the token file, or create it (0600, in a 0700 folder) with a fresh random token.

    A token file others could read (group or world bits set) is no secret any more: it is replaced by a
    new token, and the log says so (clients read the new one from the same file)."""
    p = Path(path) if path else default_token_file()
    if p.is_dir():
        raise BadInput(f"The token file {p} is a folder: give a file path, e.g. {p / 'token'}.", code="bad_token_file")
    try:
        if p.exists():
            token = p.read_text().strip()
            if token and not p.stat().st_mode & 0o077:
                return token, p
            if token:
                log.warning("the token file %s was readable by other users: it now holds a new token", p)
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        token = secrets.token_urlsafe(32)
        p.unlink(missing_ok=True)  # a new inode: whoever opened the old file keeps only the old token
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        os.chmod(p, 0o600)
    except OSError as e:
        raise BadInput(
            f"Cannot use the token file {p} ({e.strerror or e}): give a --token-file in a folder you can write.",
            code="bad_token_file",
        ) from e
    return token, p


def token_matches(header: str | None, token: str) -> bool:
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), token.encode())
