"""HTTP client for the Think2Seg backend (docs/api.md). Every failure becomes a ``Think2SegError`` with a stable code.

Two transports, one behaviour: a backend on this machine (loopback) is reached with the standard library, never
through a proxy (the token must not leave the machine); a remote backend goes through QGIS's network stack
(``QgsBlockingNetworkRequest``: the proxy, SSL and certificate settings of QGIS apply). Both work from the
QgsTask and Processing worker threads as well as the main thread.
"""

from __future__ import annotations

import json
import mimetypes
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field

from .errors import (
    BAD_ANSWER,
    HTTP_STATUS_CODES,
    IN_PANEL,
    INTERNAL,
    MODELS_FAILED,
    NO_TOKEN,
    TIMEOUT,
    UNAUTHORIZED,
    UNREACHABLE,
    Think2SegError,
    backend_sentence,
)
from .i18n import tr

API = "/v1"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass
class BackendHealth:
    status: str
    device: str
    device_detail: str
    reasoner: str
    segmenter: str
    loaded: bool
    running: int = 0
    waiting: int = 0
    versions: dict = field(default_factory=dict)
    error: str = ""  # the models failed to load: the backend's sentence
    error_code: str = ""
    download: dict = field(default_factory=dict)  # first-use weights on their way: what, done_mb, total_mb
    raw: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict) -> BackendHealth:
        models = data.get("models") or {}
        queue = data.get("queue") or {}
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        return cls(
            status=str(data.get("status", "")),
            device=str(data.get("device", "")),
            device_detail=str(data.get("device_detail", "") or data.get("device", "")),
            reasoner=str(models.get("reasoner", "")),
            segmenter=str(models.get("segmenter", "")),
            loaded=bool(models.get("loaded", data.get("status") == "ok")),
            running=int(queue.get("running", 0) or 0),
            waiting=int(queue.get("waiting", 0) or 0),
            versions=dict(data.get("versions") or {}),
            error=str(error.get("message", "")),
            error_code=str(error.get("code", "")),
            download=dict(data.get("download") or {}),
            raw=data,
        )

    def sentence(self, where: str = IN_PANEL) -> str:
        device = self.device_detail or self.device
        if self.error:
            return tr("The backend's models cannot load, so it cannot answer: {error}").format(
                error=backend_sentence(self.error_code or MODELS_FAILED, self.error, where=where)
            )
        if not self.loaded:
            if not device:  # not known until the backend has imported torch
                return tr("Backend starting: loading the models…")
            return tr("Backend starting on {device}: loading the models…").format(device=device)
        model = self.model_name()
        extra = tr(", model {model}").format(model=model) if model else ""
        if (self.device or "").lower() == "cpu":  # say what it means before the first run takes minutes
            extra += tr(" (on a CPU an answer takes minutes)")
        if self.running or self.waiting:
            return tr("Backend ready on {device}{extra}: {running} running, {waiting} waiting").format(
                device=device, extra=extra, running=self.running, waiting=self.waiting
            )
        return tr("Backend ready on {device}{extra}").format(device=device, extra=extra)

    def model_name(self) -> str:
        """The reasoner as a user tells it apart: "Think2Seg-RS-3B", or the folder name of a local (test) model."""
        name = self.reasoner.strip().rstrip("/\\")
        return name.replace("\\", "/").rsplit("/", 1)[-1] if name else ""


def encode_multipart(fields: dict[str, str], files: dict[str, str]) -> tuple[bytes, str]:
    """A multipart/form-data body: text ``fields`` and ``files`` given as name -> path."""
    boundary = f"----think2seg{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n'
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n".encode()
            + value.encode("utf-8")
            + b"\r\n"
        )
    for name, path in files.items():
        filename = os.path.basename(path).replace('"', "")
        ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        with open(path, "rb") as handle:
            content = handle.read()
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {ctype}\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def error_from_answer(status: int, reason: str, body: bytes, url: str, has_token: bool) -> Think2SegError:
    """The Think2SegError for an HTTP error answer: the backend's code and sentence when its body has them."""
    code, message = "", ""
    try:
        data = json.loads(body.decode("utf-8"))
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict):
            code, message = str(err.get("code", "")), str(err.get("message", ""))
        elif isinstance(data, dict) and "detail" in data:
            message = str(data["detail"])
    except Exception:  # noqa: BLE001  # nosec B110  # a body we cannot read still gives an HTTP status
        pass
    if status == 401 and not has_token:
        # Without a token the backend's own sentence is less useful than saying where the token comes from.
        return Think2SegError(
            NO_TOKEN,
            backend_sentence(
                NO_TOKEN,
                tr(
                    "the token file is missing or empty; start the backend once (it writes the file) or type the "
                    "token in the backend settings."
                ),
            ),
            status=status,
        )
    if status == 401 and not code:
        code = UNAUTHORIZED
    if not code:
        code = HTTP_STATUS_CODES.get(status, INTERNAL)
    if not message:
        message = tr("The backend answered HTTP {status} ({reason}).").format(status=status, reason=reason)
    return Think2SegError(code, backend_sentence(code, message, url), status=status)


class BackendClient:
    """Talks to one backend. ``timeout`` bounds connecting and quick calls; ``request_timeout`` a segmentation."""

    def __init__(self, url: str, token: str, timeout: float = 5.0, request_timeout: float = 900.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.request_timeout = request_timeout
        host = urllib.parse.urlsplit(self.url).hostname or ""
        self.loopback = host in LOOPBACK_HOSTS or host.startswith("127.")
        # A system proxy must never see loopback traffic (nor the token).
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # -- plumbing -------------------------------------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> tuple[int, dict]:
        if not self.loopback:
            status, payload, error = qgis_send(
                method, self.url + path, self._headers(content_type), body, timeout or self.timeout
            )
            if error is not None:
                raise error
            return status, self._json(payload)
        request = urllib.request.Request(self.url + path, data=body, method=method)
        request.add_header("Accept", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with self._opener.open(request, timeout=timeout or self.timeout) as response:
                payload = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            raise self._http_error(error) from None
        except (socket.timeout, TimeoutError):  # noqa: UP041 - distinct classes on Python 3.9 (QGIS 3.22 on Windows)
            raise Think2SegError(TIMEOUT, backend_sentence(TIMEOUT, "", self.url)) from None
        except urllib.error.URLError as error:
            if isinstance(error.reason, (socket.timeout, TimeoutError)):
                raise Think2SegError(TIMEOUT, backend_sentence(TIMEOUT, "", self.url)) from None
            if body and isinstance(error.reason, ConnectionError):
                raise self._broken_upload() from None
            raise Think2SegError(UNREACHABLE, backend_sentence(UNREACHABLE, "", self.url)) from None
        except ConnectionError:
            if body:
                raise self._broken_upload() from None
            raise Think2SegError(UNREACHABLE, backend_sentence(UNREACHABLE, "", self.url)) from None
        except OSError:
            raise Think2SegError(UNREACHABLE, backend_sentence(UNREACHABLE, "", self.url)) from None
        return status, self._json(payload)

    def _broken_upload(self) -> Think2SegError:
        """The connection broke while the body went up (a broken pipe, a reset). A backend that refuses the token
        answers 401 before it reads the body, so the upload breaks: ask /v1/health with the same token to tell a
        refused token (or a loading backend) from a backend that is really gone."""
        try:
            self.health(timeout=self.timeout)
        except Think2SegError as error:
            return error  # unauthorized, no token, unreachable: what the backend says to this token
        return Think2SegError(
            UNREACHABLE,
            tr(
                "The backend at {url} broke off the upload of the image although it answers; try again, or a "
                "smaller area (see the backend's log)."
            ).format(url=self.url),
        )

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _json(self, payload: bytes) -> dict:
        if not payload:
            return {}
        try:
            return json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise Think2SegError(
                BAD_ANSWER,
                tr("The backend at {url} answered something that is not JSON (is it Think2Seg?).").format(url=self.url),
            ) from None

    def _http_error(self, error: urllib.error.HTTPError) -> Think2SegError:
        return error_from_answer(error.code, str(error.reason), error.read(), self.url, bool(self.token))

    # -- the API --------------------------------------------------------------------------------------------
    def health(self, timeout: float | None = None) -> BackendHealth:
        _, data = self._request("GET", f"{API}/health", timeout=timeout)
        return BackendHealth.from_json(data)

    def _form(self, image_path: str, query: str, options: dict | None) -> tuple[bytes, str]:
        fields = {"query": query}
        if options:
            fields["options"] = json.dumps(options)
        return encode_multipart(fields, {"image": image_path})

    def segment(self, image_path: str, query: str, options: dict | None = None) -> dict:
        body, ctype = self._form(image_path, query, options)
        _, data = self._request("POST", f"{API}/segment", body, ctype, timeout=self.request_timeout)
        return data

    def submit_job(self, image_path: str, query: str, options: dict | None = None) -> str:
        body, ctype = self._form(image_path, query, options)
        _, data = self._request("POST", f"{API}/jobs", body, ctype, timeout=max(self.timeout, 120.0))
        job_id = data.get("job_id")
        if not job_id:
            raise Think2SegError(BAD_ANSWER, tr("The backend accepted the job but gave no job id."))
        return str(job_id)

    def job_status(self, job_id: str) -> dict:
        return self._request("GET", f"{API}/jobs/{urllib.parse.quote(job_id)}")[1]

    def job_result(self, job_id: str) -> dict:
        _, data = self._request(
            "GET", f"{API}/jobs/{urllib.parse.quote(job_id)}/result", timeout=max(self.timeout, 60.0)
        )
        return data

    def cancel_job(self, job_id: str) -> None:
        self._request("DELETE", f"{API}/jobs/{urllib.parse.quote(job_id)}")

    def refine(self, view_id: str, prompts: dict) -> dict:
        """Re-segment one instance of an answer (POST /v1/views/{view_id}/refine): ``prompts`` holds ``frame``,
        ``box``, ``positive_points``, ``negative_points`` and ``instance`` (docs/api.md)."""
        body = json.dumps(prompts).encode("utf-8")
        _, data = self._request(
            "POST",
            f"{API}/views/{urllib.parse.quote(view_id)}/refine",
            body,
            "application/json",
            timeout=max(self.timeout, 120.0),
        )
        return data


def qgis_send(
    method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float
) -> tuple[int, bytes, Think2SegError | None]:
    """One request through QGIS's network stack: (HTTP status, body, None) or (status, b"", the error).

    QgsBlockingNetworkRequest runs its own event loop, so it works from worker threads (QgsTask, Processing).
    """
    from qgis.core import QgsBlockingNetworkRequest
    from qgis.PyQt.QtCore import QByteArray, QUrl
    from qgis.PyQt.QtNetwork import QNetworkRequest

    request = QNetworkRequest(QUrl(url))
    for key, value in headers.items():
        request.setRawHeader(key.encode(), value.encode())
    request.setTransferTimeout(int(timeout * 1000))
    blocking = QgsBlockingNetworkRequest()
    if method == "GET":
        code = blocking.get(request, True)
    elif method == "POST":
        code = blocking.post(request, QByteArray(body or b""))
    elif method == "DELETE":
        code = blocking.deleteResource(request)
    else:
        raise ValueError(method)
    reply = blocking.reply()
    status = reply.attribute(QNetworkRequest.Attribute.HttpStatusCodeAttribute)
    status = int(status) if status not in (None, "") else 0
    payload = bytes(reply.content())
    if code == QgsBlockingNetworkRequest.ErrorCode.NoError:
        return status or 200, payload, None
    base = url.split("/v1/", 1)[0]
    if status >= 400:
        reason = str(reply.attribute(QNetworkRequest.Attribute.HttpReasonPhraseAttribute) or "")
        return status, b"", error_from_answer(status, reason, payload, base, "Authorization" in headers)
    if code == QgsBlockingNetworkRequest.ErrorCode.TimeoutError:
        return 0, b"", Think2SegError(TIMEOUT, backend_sentence(TIMEOUT, "", base))
    detail = blocking.errorMessage()
    return (
        0,
        b"",
        Think2SegError(
            UNREACHABLE,
            f"{backend_sentence(UNREACHABLE, '', base)} ({detail})"
            if detail
            else backend_sentence(UNREACHABLE, "", base),
        ),
    )
