"""The one environment of every process the plugin starts (the set-up steps, ``think2seg serve``).

QGIS sets variables for its own interpreter and libraries (``PYTHONHOME``/``PYTHONPATH`` on Windows and macOS,
``GDAL_DATA``/``PROJ_LIB``/``PROJ_DATA``, ``QT_PLUGIN_PATH``) and puts its Python's folders on ``PATH``.
Inherited by the backend's own interpreter they break it (its numpy, rasterio, pyproj found in QGIS's folders,
or PROJ reading another version's database: qgis/QGIS#66672, Geo-SAM#57). They are dropped here; what the
user set for the network (proxies, certificates, the package index) is kept, and QGIS's own proxy settings
(Settings > Options > Network) are added when the user configured one there and set none in the environment.

``THINK2SEG_CHILD_PYTHONPATH`` (for a developer running a checkout) becomes the child's ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

DROPPED = (
    "PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "PYTHONUSERBASE", "VIRTUAL_ENV",
    "CONDA_PREFIX", "GDAL_DATA", "GDAL_DRIVER_PATH", "PROJ_LIB", "PROJ_DATA", "QT_PLUGIN_PATH",
    "QGIS_PREFIX_PATH",
)  # fmt: skip
#: Kept as the user set them (listed for the reader and the tests: nothing else is removed but DROPPED).
NETWORK = (
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "CURL_CA_BUNDLE", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CERT", "PIP_TRUSTED_HOST", "PIP_FIND_LINKS",
    "PIP_NO_INDEX", "UV_INDEX_URL", "UV_PYTHON_INSTALL_MIRROR", "UV_PYTHON_DOWNLOADS_JSON_URL", "UV_NATIVE_TLS",
    "HF_ENDPOINT", "HF_HOME", "HF_TOKEN", "HF_HUB_OFFLINE",
)  # fmt: skip
#: Prefixes too general to be QGIS's own (a Linux QGIS uses the system's Python in /usr).
_SYSTEM_PREFIXES = {"/", "/usr", "/usr/local", "/opt/homebrew", "/opt/local"}
LOOPBACK = "127.0.0.1,localhost,::1"


def qgis_python_folders() -> list[str]:
    """The folders of the Python QGIS runs (its prefix), where they are QGIS's own and not the system's."""
    folders = []
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
        real = os.path.normcase(os.path.realpath(prefix))
        if real and os.path.normcase(real.rstrip("/\\") or "/") not in _SYSTEM_PREFIXES:
            folders.append(real)
    return sorted(set(folders))


def _under(path: str, folders: list[str]) -> bool:
    p = os.path.normcase(os.path.realpath(path)) if path else ""
    return any(p == f or p.startswith(f.rstrip("/\\") + os.sep) for f in folders)


#: QGIS 3.22..3.44 keep Settings > Options > Network's proxy under ``proxy/proxyEnabled``, ``proxyType``,
#: ``proxyHost``, ``proxyPort``, ``proxyUser``, ``proxyPassword`` and these two lists (checked in libqgis_core
#: 3.22, 3.40 and 3.44; 3.44's settings tree has no proxy entry). A later QGIS moves them into its settings tree:
#: where the keys are absent, the network manager QGIS set up from them is asked instead.
EXCLUDED_KEYS = "proxy/proxyExcludedUrls", "proxy/noProxyUrls"


def qgis_proxy_settings() -> dict[str, str]:
    """The proxy configured in QGIS (Settings > Options > Network), as HTTP(S)_PROXY and NO_PROXY; {} when none
    or when QGIS is to use the system's proxy (then the environment already has it)."""
    try:
        from qgis.core import QgsSettings
    except ImportError:
        return {}
    s = QgsSettings()
    if s.contains("proxy/proxyEnabled") or s.contains("proxy/proxyHost"):
        enabled = str(s.value("proxy/proxyEnabled", False)).lower() in ("true", "1")
        kind = str(s.value("proxy/proxyType", "HttpProxy") or "HttpProxy")
        host = str(s.value("proxy/proxyHost", "") or "").strip()
        port = str(s.value("proxy/proxyPort", "") or "").strip()
        user = str(s.value("proxy/proxyUser", "") or "")
        password = str(s.value("proxy/proxyPassword", "") or "")
        excluded = [e for key in EXCLUDED_KEYS for e in _as_list(s.value(key, ""))]
    else:
        enabled, kind, host, port, user, password, excluded = _network_manager_proxy()
    if not enabled or not host or kind in ("DefaultProxy", "NoProxy"):
        return {}
    scheme = "socks5" if kind == "Socks5Proxy" else "http"
    auth = f"{quote(user, safe='')}:{quote(password, safe='')}@" if user else ""
    url = f"{scheme}://{auth}{host}{':' + port if port and port != '0' else ''}"
    hosts = []
    for entry in excluded:  # QGIS lists URL beginnings ("https://intranet.example/"); NO_PROXY wants host names
        name = urlsplit(entry if "//" in entry else "//" + entry).hostname or ""
        if name and name not in hosts:
            hosts.append(name)
    return {"HTTP_PROXY": url, "HTTPS_PROXY": url, "NO_PROXY": ",".join(hosts)}


def _as_list(value) -> list[str]:
    """A QgsSettings list: a real list, or one string joined with | or , (as older profiles stored it)."""
    items = value if isinstance(value, (list, tuple)) else str(value or "").replace("|", ",").split(",")
    return [str(e).strip() for e in items if str(e).strip()]


def _network_manager_proxy() -> tuple:
    """(enabled, type name, host, port, user, password, excluded) of the proxy QGIS's network manager uses."""
    from qgis.core import QgsNetworkAccessManager
    from qgis.PyQt.QtNetwork import QNetworkProxy

    manager = QgsNetworkAccessManager.instance()
    proxy = manager.fallbackProxy()
    names = {QNetworkProxy.ProxyType.HttpProxy: "HttpProxy", QNetworkProxy.ProxyType.Socks5Proxy: "Socks5Proxy",
             QNetworkProxy.ProxyType.HttpCachingProxy: "HttpProxy"}  # fmt: skip
    kind = names.get(proxy.type(), "NoProxy")
    excluded = list(manager.excludeList()) + list(manager.noProxyList())
    return (kind != "NoProxy", kind, proxy.hostName(), str(proxy.port() or ""), proxy.user(), proxy.password(),
            excluded)  # fmt: skip


def child_environment(
    base: Mapping[str, str] | None = None,
    proxy: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """`base` (default: this process's environment) less QGIS's own variables and Python folders on PATH, with
    the user's network settings kept, QGIS's proxy (`proxy`, default read from QgsSettings) added where the
    environment names none, loopback never proxied, and `extra` on top."""
    env = dict(os.environ if base is None else base)
    developer_path = env.get("THINK2SEG_CHILD_PYTHONPATH", "")
    upper = {k.upper(): k for k in env}
    for name in DROPPED:
        if name in upper:
            env.pop(upper[name], None)
    folders = qgis_python_folders()
    for key in [k for k in env if k.upper() == "PATH"]:
        kept = [p for p in env[key].split(os.pathsep) if p and not _under(p, folders)]
        env[key] = os.pathsep.join(kept)
    if developer_path:
        env["PYTHONPATH"] = developer_path
    proxy = qgis_proxy_settings() if proxy is None else dict(proxy)
    has_proxy = any(k.upper() in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY") for k in env)
    if proxy and not has_proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY"):
            if proxy.get(name):
                env[name] = proxy[name]
        if proxy.get("NO_PROXY"):
            env["NO_PROXY"] = proxy["NO_PROXY"]
    if any(k.upper() in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY") for k in env):
        # the backend and a loopback mirror are never reached through the proxy
        no_proxy_key = next((k for k in env if k.upper() == "NO_PROXY"), "NO_PROXY")
        present = [e for e in env.get(no_proxy_key, "").split(",") if e.strip()]
        env[no_proxy_key] = ",".join(present + [h for h in LOOPBACK.split(",") if h not in present])
    env.update(extra or {})
    return env
