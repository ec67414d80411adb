"""The set-up's torch step, run by the new venv's own Python (standard library and pip only, nothing of QGIS).

    THINK2SEG_TORCH_UNREACHABLE=SENTENCE python torch_install.py INDEX_URL PIP_ARGS...

Asks PyTorch's index (INDEX_URL) once, with a short timeout, through the same proxy and certificates pip uses.
When it answers, pip installs with it as an extra index; when not, SENTENCE (the plugin's, translated) is printed
and pip installs from the other indexes alone: it would otherwise retry the unreachable index five times for
every package page (minutes, measured in README's Install), then take PyPI's torch just the same.
"""

from __future__ import annotations

import os
import runpy
import ssl
import sys
import urllib.error
import urllib.request


def reachable(url: str, timeout: float = 15.0) -> bool:
    """Whether `url` answers (any HTTP status counts)."""
    cafile = os.environ.get("PIP_CERT") or os.environ.get("REQUESTS_CA_BUNDLE") or None
    context = ssl.create_default_context(cafile=cafile) if cafile and os.path.isfile(cafile) else None
    try:
        urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=timeout, context=context).close()  # nosec B310
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False  # why is left out: the set-up reads network causes from a failed step's words (pip's)
    return True


def main(argv: list[str]) -> None:
    index, pip_args = argv[0], argv[1:]
    sentence = os.environ.get("THINK2SEG_TORCH_UNREACHABLE") or f"{index} cannot be reached: torch comes from PyPI."
    if reachable(index):
        pip_args += ["--extra-index-url", index]
    else:
        print(sentence, flush=True)
    sys.argv = ["pip", "install", *pip_args]
    runpy.run_module("pip", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
