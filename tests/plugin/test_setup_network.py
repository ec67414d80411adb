"""*Set up backend…* without a usable network ends in a sentence that names what happened and what to do, and
QGIS's own proxy (Settings > Options > Network) reaches pip, never for loopback.

Real pip in a real venv against real servers on 127.0.0.1: a closed port, one that hangs up, one that answers
garbage, an HTTPS index whose certificate nobody trusts, and a proxy that refuses (407). The machine's pip
configuration (local wheel folders and indexes) is switched off, so pip has only what each test gives it.
"""

from __future__ import annotations

import http.server
import socket
import socketserver
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from plugin_testing import wait_until
from qgis.core import QgsSettings
from think2seg.testing.live_service import free_port

from think2seg_qgis.backend_setup import BackendSetup, SetupPlan, base_python, network_failure


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("setup-net") / "venv"
    subprocess.run([base_python(), "-m", "venv", str(folder)], check=True, timeout=120)
    return folder


@pytest.fixture()
def pip_alone(monkeypatch):
    """pip with no configuration file, no wheel folder, one retry, short timeouts, no proxy of the user's."""
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    for name in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX", "PIP_CERT",
                 "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "no_proxy", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_RETRIES", "1")  # pip names a connection failure only when it retries (as by default)
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "5")
    monkeypatch.setenv("PIP_TIMEOUT", "5")


def run_step(venv: Path, tmp_path: Path, title_word: str, ok: bool = False) -> BackendSetup:
    """The set-up's own step whose title has `title_word`, run by BackendSetup to its end (failing unless `ok`)."""
    wheel = tmp_path / "think2seg-0-py3-none-any.whl"
    wheel.write_bytes(b"")
    setup = BackendSetup(SetupPlan(venv_dir=str(venv), wheel=str(wheel)), str(tmp_path / "setup.log"))
    setup.steps = [s for s in setup.steps if title_word in s.title]
    assert setup.steps
    setup.start()
    assert wait_until(lambda: setup.ok is not None, timeout=120), Path(setup.log_file).read_text()
    assert setup.ok is ok, Path(setup.log_file).read_text()[-3000:]
    return setup


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


class Garbage(_Quiet):
    def do_GET(self):  # noqa: N802 - http.server's name
        body = b"\x00\x01<<this is no index>>\xff" * 50
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class RefusingProxy(_Quiet):
    def do_CONNECT(self):  # noqa: N802
        self.send_response(407, "Proxy Authentication Required")
        self.send_header("Proxy-Authenticate", 'Basic realm="corp"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_CONNECT


class HangUp(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.recv(1024)
        self.request.shutdown(socket.SHUT_RDWR)


def serve(handler, tls_dir: Path | None = None, by_address: bool = False) -> tuple[str, socketserver.TCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    scheme = "http"
    if tls_dir is not None:  # a certificate of its own, trusted by nobody
        key, cert = tls_dir / "key.pem", tls_dir / "cert.pem"
        command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                   str(cert), "-days", "1", "-subj", "/CN=localhost"]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # An HTTPS index by name, as mirrors are (on 127.0.0.1): pip's truststore (pip on Python 3.13, QGIS 3.40)
    # fails with "check_hostname requires server_hostname" before any certificate check when given an address.
    host = "localhost" if tls_dir is not None and not by_address else "127.0.0.1"
    return f"{scheme}://{host}:{server.server_address[1]}", server


OFFLINE = "pip could not reach the Python package index"
OFFLINE_SITES = "PIP_INDEX_URL"


def test_a_closed_port_reads_as_no_network_with_what_to_do(qgis_app, venv, tmp_path, monkeypatch, pip_alone):
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{free_port()}/simple")
    setup = run_step(venv, tmp_path, "torch")  # the torch step: PyTorch's index too, unreachable here as well
    sentence = Path(setup.log_file).read_text().strip().splitlines()[-1]
    assert OFFLINE in sentence and "Settings > Options > Network" in sentence and OFFLINE_SITES in sentence
    assert "exited with code" not in sentence and setup.log_file in sentence


def test_no_retries_of_the_users_still_read_as_no_network(qgis_app, venv, tmp_path, monkeypatch, pip_alone):
    """With PIP_RETRIES=0 pip prints only "No matching distribution found" for an index it never reached, which
    read as "the index answered, with no such package"; the set-up lets pip retry once, so it names the cause."""
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{free_port()}/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    setup = run_step(venv, tmp_path, "SAM2")
    log = Path(setup.log_file).read_text()
    assert OFFLINE in log.strip().splitlines()[-1] and "Retrying" in log


def test_an_index_that_hangs_up_reads_as_no_network(qgis_app, venv, tmp_path, monkeypatch, pip_alone):
    url, server = serve(HangUp)
    monkeypatch.setenv("PIP_INDEX_URL", url + "/simple")
    try:
        setup = run_step(venv, tmp_path, "SAM2")
    finally:
        server.shutdown()
    assert OFFLINE in Path(setup.log_file).read_text().splitlines()[-1]


def test_an_index_answering_garbage_names_the_mirror(qgis_app, venv, tmp_path, monkeypatch, pip_alone):
    url, server = serve(Garbage)
    monkeypatch.setenv("PIP_INDEX_URL", url + "/simple")
    try:
        setup = run_step(venv, tmp_path, "SAM2")
    finally:
        server.shutdown()
    sentence = Path(setup.log_file).read_text().splitlines()[-1]
    assert "with no usable version" in sentence and "PIP_INDEX_URL names a mirror" in sentence


def test_an_untrusted_certificate_is_named(qgis_app, venv, tmp_path, monkeypatch, pip_alone):
    url, server = serve(Garbage, tls_dir=tmp_path)
    monkeypatch.setenv("PIP_INDEX_URL", url + "/simple")
    try:
        setup = run_step(venv, tmp_path, "SAM2")
    finally:
        server.shutdown()
    sentence = Path(setup.log_file).read_text().splitlines()[-1]
    assert "a certificate was refused" in sentence and "PIP_CERT" in sentence


def test_an_https_index_by_address_is_named_where_pip_cannot_check_it(qgis_app, venv, tmp_path, monkeypatch,
                                                                       pip_alone):  # fmt: skip
    """pip 24.2+ (QGIS 3.40's and 3.44's Python) fails on an HTTPS index given as an address before any certificate
    check ("exited with code 2" before): a sentence with the two ways out, the second of which is checked here.
    An older pip (QGIS 3.22's) checks the certificate and refuses it."""
    url, server = serve(Garbage, tls_dir=tmp_path, by_address=True)
    monkeypatch.setenv("PIP_INDEX_URL", url + "/simple")
    try:
        setup = run_step(venv, tmp_path, "SAM2")
        log = Path(setup.log_file).read_text()
        sentence = log.splitlines()[-1]
        if "check_hostname requires server_hostname" not in log:
            assert "a certificate was refused" in sentence, sentence
            return
        assert "named by its IP address" in sentence and "PIP_USE_DEPRECATED=legacy-certs" in sentence, sentence
        monkeypatch.setenv("PIP_USE_DEPRECATED", "legacy-certs")  # what the sentence advises
        (tmp_path / "again").mkdir()
        setup = run_step(venv, tmp_path / "again", "SAM2")
    finally:
        server.shutdown()
    assert "a certificate was refused" in Path(setup.log_file).read_text().splitlines()[-1]


@pytest.fixture()
def qgis_proxy():
    """Sets QGIS's proxy (Settings > Options > Network) as the options dialog stores it; removed after."""
    s = QgsSettings()

    def configure(url: str) -> None:
        host, port = url.split("//")[1].split(":")
        for key, value in {"proxy/proxyEnabled": True, "proxy/proxyType": "HttpProxy", "proxy/proxyHost": host,
                           "proxy/proxyPort": port, "proxy/proxyExcludedUrls": ["https://intranet.example/wms"],
                           "proxy/noProxyUrls": ["http://maps.local:8080/"]}.items():  # fmt: skip
            s.setValue(key, value)

    yield configure
    s.remove("proxy")


def test_qgis_proxy_reaches_pip_and_its_refusal_is_named(qgis_app, venv, tmp_path, pip_alone, qgis_proxy):
    url, proxy = serve(RefusingProxy)
    qgis_proxy(url)  # the environment names no proxy: QGIS's is the one pip gets
    try:
        setup = run_step(venv, tmp_path, "SAM2")  # pip's default index, https://pypi.org, through the proxy
    finally:
        proxy.shutdown()
    log = Path(setup.log_file).read_text()
    assert "407" in log or "ProxyError" in log
    sentence = log.splitlines()[-1]
    assert "the proxy refused" in sentence and "Settings > Options > Network" in sentence


def test_loopback_never_goes_through_qgis_proxy(qgis_app, venv, tmp_path, monkeypatch, pip_alone, qgis_proxy):
    url, proxy = serve(RefusingProxy)
    index, server = serve(Garbage)
    qgis_proxy(url)
    monkeypatch.setenv("PIP_INDEX_URL", index + "/simple")  # a mirror on this machine: reached directly
    try:
        setup = run_step(venv, tmp_path, "SAM2")
    finally:
        proxy.shutdown()
        server.shutdown()
    log = Path(setup.log_file).read_text()
    assert "ProxyError" not in log and "with no usable version" in log.splitlines()[-1]


def test_the_cause_is_read_most_specific_first():
    assert network_failure("ProxyError('Cannot connect to proxy.', NewConnectionError(...))") == "proxy"
    assert network_failure("SSLError(ValueError('check_hostname requires server_hostname'))") == "address"
    assert network_failure("SSLError(SSLCertVerificationError(1, 'certificate verify failed'))") == "certificate"
    assert network_failure("Failed to establish a new connection: [Errno -2] Name or service not known") == "offline"
    assert network_failure("ERROR: No matching distribution found for sam2==1.1.0") == "index"
    assert network_failure("UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff") == "index"
    assert network_failure("error: subprocess-exited-with-error (a compiler)") == ""


def test_qgis_excluded_urls_become_host_names_in_no_proxy(qgis_app, pip_alone, qgis_proxy):
    from think2seg_qgis.child_env import child_environment

    qgis_proxy("http://corp-proxy:3128")
    env = child_environment()
    assert env["HTTPS_PROXY"] == "http://corp-proxy:3128"
    assert env["NO_PROXY"].split(",") == ["intranet.example", "maps.local", "127.0.0.1", "localhost", "::1"]


def test_without_the_keys_the_proxy_qgis_network_manager_uses_is_taken(qgis_app, pip_alone):
    """A QGIS whose settings tree moved the proxy keys: QgsNetworkAccessManager's proxy is what counts."""
    from qgis.core import QgsNetworkAccessManager
    from qgis.PyQt.QtNetwork import QNetworkProxy

    from think2seg_qgis.child_env import qgis_proxy_settings

    QgsSettings().remove("proxy")
    manager = QgsNetworkAccessManager.instance()
    before = (QNetworkProxy(manager.fallbackProxy()), manager.excludeList(), manager.noProxyList())
    try:
        manager.setFallbackProxyAndExcludes(
            QNetworkProxy(QNetworkProxy.ProxyType.HttpProxy, "nam-proxy", 8080, "me", "pw"), ["http://wms.local/"], []
        )
        assert qgis_proxy_settings() == {
            "HTTP_PROXY": "http://me:pw@nam-proxy:8080", "HTTPS_PROXY": "http://me:pw@nam-proxy:8080",
            "NO_PROXY": "wms.local",
        }  # fmt: skip
    finally:
        manager.setFallbackProxyAndExcludes(*before)
    assert qgis_proxy_settings() == {}


@pytest.fixture(scope="module")
def venv_with_torch(tmp_path_factory) -> Path:
    """A venv that already has torch & co. (the backend venv's, reused as test_first_run does): pip installs
    nothing, so what the torch step itself does is what is seen."""
    from plugin_testing import BACKEND_PYTHON, backend_site_packages, python_version

    if python_version(base_python()) != python_version(str(BACKEND_PYTHON)):
        pytest.skip("the backend venv's packages load only in its own Python version")
    folder = tmp_path_factory.mktemp("setup-torch") / "venv"
    subprocess.run([base_python(), "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    purelib = subprocess.run([str(folder / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    Path(purelib, "reuse.pth").write_text(backend_site_packages() + "\n")  # pip comes from there too
    return folder


class TorchIndex(_Quiet):
    """PyTorch's index as pip sees it: a simple page per project (empty: the reused torch satisfies pip)."""

    def do_GET(self):  # noqa: N802
        self.server.asked.append(self.path)
        body = b"<!DOCTYPE html><html><body></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_an_unreachable_pytorch_index_is_said_once_not_retried(
    qgis_app, venv_with_torch, tmp_path, monkeypatch, pip_alone
):
    from think2seg_qgis import backend_setup

    index = f"http://127.0.0.1:{free_port()}/whl/cpu"  # nobody listens: like download.pytorch.org offline
    monkeypatch.setitem(backend_setup.TORCH_INDEXES, "cpu", index)
    monkeypatch.setenv("PIP_RETRIES", "5")  # pip's default: each unreachable page would cost ~7 s
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # and nothing else to reach: torch is already there
    setup = run_step(venv_with_torch, tmp_path, "torch", ok=True)
    log = Path(setup.log_file).read_text()
    assert f"PyTorch's index ({index}) cannot be reached" in log and "the CPU build" in log
    assert "Retrying" not in log and "Requirement already satisfied: torch" in log


def test_a_reachable_pytorch_index_is_given_to_pip(qgis_app, venv_with_torch, tmp_path, monkeypatch, pip_alone):
    from think2seg_qgis import backend_setup

    url, server = serve(TorchIndex)
    server.asked = []
    monkeypatch.setitem(backend_setup.TORCH_INDEXES, "cpu", url + "/whl/cpu")
    monkeypatch.setenv("PIP_INDEX_URL", url + "/simple")  # everything on 127.0.0.1
    try:
        setup = run_step(venv_with_torch, tmp_path, "torch", ok=True)
    finally:
        server.shutdown()
    log = Path(setup.log_file).read_text()
    assert "cannot be reached" not in log and f"{url}/whl/cpu" in log.split("Looking in indexes:")[1].splitlines()[0]
    assert "/whl/cpu/torch/" in server.asked
