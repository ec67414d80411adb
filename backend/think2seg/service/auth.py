"""The bearer token: generated on first start, stored mode 0600 where the plugin can read it."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path


def default_token_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "think2seg" / "token"


def load_or_create_token(path: str | os.PathLike | None = None) -> tuple[str, Path]:
    """Read the token file, or create it (0600, in a 0700 folder) with a fresh random token."""
    p = Path(path) if path else default_token_file()
    if p.exists():
        token = p.read_text().strip()
        if token:
            if p.stat().st_mode & 0o077:
                os.chmod(p, 0o600)  # a token others can read is no token
            return token, p
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.chmod(p, 0o600)
    return token, p


def token_matches(header: str | None, token: str) -> bool:
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer "):].strip().encode(), token.encode())
