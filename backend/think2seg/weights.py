"""Where model weights come from: a local folder or file, the Hugging Face cache, or a first-use download.

Downloads go through `huggingface_hub` (progress bars, the usual cache in ~/.cache/huggingface). Offline
with nothing cached, the user gets a sentence naming the files to fetch and where to put them.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .errors import WeightsUnavailable

DEFAULT_REASONER = "RicardoString/Think2Seg-RS-3B"
KNOWN_REASONERS = {
    "RicardoString/Think2Seg-RS-3B": (
        "fine-tuned Qwen2.5-VL-3B-Instruct (base under the Qwen research licence: check it)"
    ),
    "RicardoString/Think2Seg-RS-7B": "fine-tuned Qwen2.5-VL-7B-Instruct (base under Apache-2.0)",
}
DEFAULT_SAM_SIZE = "small"


@dataclass(frozen=True)
class SamSize:
    name: str
    config: str  # the sam2 package's own config, relative to its config root
    hub_id: str
    filename: str  # the checkpoint's file name in the hub repo and in Meta's releases


SAM_SIZES = {
    "tiny": SamSize("tiny", "configs/sam2.1/sam2.1_hiera_t.yaml", "facebook/sam2.1-hiera-tiny", "sam2.1_hiera_tiny.pt"),
    "small": SamSize(
        "small", "configs/sam2.1/sam2.1_hiera_s.yaml", "facebook/sam2.1-hiera-small", "sam2.1_hiera_small.pt"
    ),
    "base_plus": SamSize(
        "base_plus",
        "configs/sam2.1/sam2.1_hiera_b+.yaml",
        "facebook/sam2.1-hiera-base-plus",
        "sam2.1_hiera_base_plus.pt",
    ),
    "large": SamSize(
        "large", "configs/sam2.1/sam2.1_hiera_l.yaml", "facebook/sam2.1-hiera-large", "sam2.1_hiera_large.pt"
    ),
}
_SIZE_ALIASES = {
    "t": "tiny",
    "tiny": "tiny",
    "s": "small",
    "small": "small",
    "b+": "base_plus",
    "b_plus": "base_plus",
    "base_plus": "base_plus",
    "base-plus": "base_plus",
    "baseplus": "base_plus",
    "l": "large",
    "large": "large",
}


def sam_size(name: str) -> SamSize:
    key = _SIZE_ALIASES.get(name.strip().lower())
    if key is None:
        raise WeightsUnavailable(
            f"Unknown SAM2 size '{name}': use tiny, small, base_plus or large.", code="bad_sam_size"
        )
    return SAM_SIZES[key]


def sam_size_from_filename(path: str | os.PathLike) -> SamSize | None:
    """`sam2.1_hiera_t.pt`, `sam2.1_hiera_small.pt`, `sam2.1_hiera_b+.pt`... -> the size; None if unknown."""
    stem = Path(path).stem.lower().replace("-", "_")
    candidates = [stem.split("hiera_", 1)[1]] if "hiera_" in stem else []
    candidates += reversed(stem.split("_"))
    for token in candidates:
        key = _SIZE_ALIASES.get(token)
        if key:
            return SAM_SIZES[key]
    return None


@dataclass
class DownloadProgress:
    """What a first-use download is fetching right now, for the service's health answer (the plugin shows it).

    huggingface_hub reports bytes through a tqdm class; every byte bar (unit "B") of the current download adds
    its count, so several files in flight sum up.
    """

    what: str = ""
    bars: dict[int, tuple[int, int]] = field(default_factory=dict)  # id(bar) -> (bytes done, bytes total)
    expected: int = 0  # bytes the hub said are to come (bars add their totals only as each file starts)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def start(self, what: str, expected: int = 0) -> None:
        with self.lock:
            self.what, self.bars, self.expected = what, {}, int(expected or 0)

    def finish(self) -> None:
        with self.lock:
            self.what, self.bars = "", {}

    def record(self, bar_id: int, done: int, total: int) -> None:
        with self.lock:
            if self.what:
                self.bars[bar_id] = (int(done), int(total))

    def to_dict(self) -> dict | None:
        """``{"what", "done_mb", "total_mb", "fraction"}`` while a download runs, else None."""
        with self.lock:
            if not self.what:
                return None
            done = sum(d for d, _ in self.bars.values())
            total = max(sum(t for _, t in self.bars.values()), self.expected)
        return {
            "what": self.what,
            "done_mb": round(done / 1e6, 1),
            "total_mb": round(total / 1e6, 1) if total else None,
            "fraction": round(done / total, 4) if total else None,
        }


DOWNLOAD = DownloadProgress()


def _recording_tqdm():
    """A tqdm class for huggingface_hub's downloads that also records bytes in DOWNLOAD (and still prints bars)."""
    from tqdm.auto import tqdm

    class RecordingTqdm(tqdm):
        def update(self, n=1):
            shown = super().update(n)
            # huggingface_hub 2.x's snapshot_download keeps two byte bars of the same files: the bytes written
            # ("Reconstructing ...") and those received ("Downloading bytes"); counting both doubled the MB.
            if getattr(self, "unit", "") == "B" and not str(getattr(self, "desc", "")).startswith("Downloading bytes"):
                DOWNLOAD.record(id(self), self.n, self.total or 0)
            return shown

    return RecordingTqdm


def _offline_sentence(what: str, repo: str, files: str, where: str) -> str:
    return (
        f"The {what} weights '{repo}' are not on this machine and the Hugging Face hub cannot be reached. "
        f"On a machine with internet, fetch {files} from https://huggingface.co/{repo} "
        f"(for example `hf download {repo} --local-dir DIR`), copy DIR here and pass {where} DIR."
    )


REASONER_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]


def resolve_reasoner(model: str) -> str:
    """A local folder as is; a hub id is downloaded (or found in the cache) and its snapshot folder returned."""
    if os.path.isdir(model):
        if not (Path(model) / "config.json").exists():
            raise WeightsUnavailable(
                f"The folder {model} has no config.json: it is not a transformers model folder.", code="bad_model"
            )
        return model
    if os.path.exists(model):
        raise WeightsUnavailable(f"{model} is a file; --model takes a hub id or a model folder.", code="bad_model")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        report = prepare_cache(model, REASONER_PATTERNS)
    except HFValidationError as e:
        raise WeightsUnavailable(
            f"'{model}' is neither a local folder nor a valid hub id ({e}).", code="bad_model"
        ) from e
    DOWNLOAD.start(f"reasoner {model}", report["need"])
    try:
        return snapshot_download(model, allow_patterns=REASONER_PATTERNS, tqdm_class=_recording_tqdm())
    except HFValidationError as e:
        raise WeightsUnavailable(
            f"'{model}' is neither a local folder nor a valid hub id ({e}).", code="bad_model"
        ) from e
    except Exception as e:
        raise WeightsUnavailable(
            download_failure_sentence(
                e,
                "reasoner",
                model,
                _offline_sentence(
                    "reasoner",
                    model,
                    "config.json, the *.safetensors files, the tokenizer and processor files",
                    "--model",
                ),
            )
        ) from e
    finally:
        DOWNLOAD.finish()


# --- the first-run download: room, partial files left by a killed download, what each failure means --------------


def _hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def free_bytes_at(path: str | os.PathLike) -> int:
    """Free bytes on the file system that holds `path` (or would: its nearest existing parent)."""
    import shutil

    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def room_sentence(need: int, free: int, cache_dir: str | os.PathLike, repo: str) -> str | None:
    """None when `need` bytes fit in `free`; else what to do, with both figures (a pure function)."""
    if need <= free:
        return None
    return (
        f"Not enough disk space for '{repo}': it needs {need / 1e9:.2f} GB more and {cache_dir} has "
        f"{free / 1e9:.2f} GB free. Free some space there, or put the Hugging Face cache on a disk with room: "
        "set the environment variable HF_HOME to a folder there (for example HF_HOME=D:\\hf-cache or "
        "HF_HOME=/data/hf-cache) before starting Think2Seg."
    )


def _matches(name: str, patterns: list[str] | None) -> bool:
    from fnmatch import fnmatch

    return patterns is None or any(fnmatch(name, p) for p in patterns)


def _lock_is_free(lock_path: Path):
    """The hub's own per-blob lock, taken now (a context manager), or None when a live download holds it."""
    from filelock import FileLock, Timeout

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return None
    return lock


#: Bytes huggingface_hub reads from a download before writing them: after a broken connection it resumes (Range)
#: from the last piece written, and its 10 MiB left a link that breaks more often than that with no progress at
#: all (each of its five retries fetched the same first bytes again, then it gave up). 1 MiB pieces: a link has
#: to hold for 1 MiB at a time; the same speed (scripts/download_bench.py).
DOWNLOAD_PIECE = 1 << 20


def use_download_pieces() -> None:
    """Set huggingface_hub's piece size (DOWNLOAD_PIECE) for this process's downloads (it reads it per download)."""
    from huggingface_hub import constants

    constants.DOWNLOAD_CHUNK_SIZE = DOWNLOAD_PIECE


def prepare_cache(repo_id: str, patterns: list[str] | None, free: int | None = None) -> dict:
    """Before a hub download: refuse when the files still to fetch do not fit on the cache's disk (a sentence with
    both figures, before any byte of a file is fetched), then deal with the partial files a killed download left
    (``<blob>.<random>.incomplete``: huggingface_hub 2.x writes one per process and nothing resumes or removes
    it). A partial whose lock (the hub's ``.locks/.../<etag>.lock``) a live download holds is left alone; any
    other one is resumed by a ``Range`` request where the hub serves the file over plain HTTP, else removed.
    Offline (HF_HUB_OFFLINE) nothing is sent and stale partials are only removed.

    Returns what it did: ``{"need", "free", "resumed": {file: bytes kept}, "removed": [paths]}``."""
    from huggingface_hub import constants

    use_download_pieces()
    from huggingface_hub.file_download import repo_folder_name

    cache = _hub_cache_dir()
    folder = repo_folder_name(repo_id=repo_id, repo_type="model")
    blobs, locks = cache / folder / "blobs", cache / ".locks" / folder
    report: dict = {"need": 0, "free": None, "resumed": {}, "removed": []}
    info = None
    partials = sorted(blobs.glob("*.incomplete")) if blobs.is_dir() else []
    if (cache / folder / "refs" / "main").exists() and not partials:
        return report  # fetched before and nothing interrupted: no extra request (the download checks for updates)
    if not constants.HF_HUB_OFFLINE:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HFValidationError

        try:
            info = HfApi().model_info(repo_id, files_metadata=True, timeout=constants.HF_HUB_ETAG_TIMEOUT)
        except HFValidationError:
            raise
        except Exception:  # unreachable, missing, gated, broken: the download itself says so (or uses the cache)
            info = None
    by_etag = {}
    if info is not None:
        for sib in info.siblings or []:
            if _matches(sib.rfilename, patterns):
                by_etag[sib.lfs.sha256 if sib.lfs else sib.blob_id] = sib
        need = sum((s.lfs.size if s.lfs else s.size or 0) for e, s in by_etag.items() if not (blobs / e).exists())
        report["need"] = need
        report["free"] = free if free is not None else free_bytes_at(cache)
        sentence = room_sentence(need, report["free"], cache, repo_id)
        if sentence:
            raise WeightsUnavailable(sentence)
    for partial in partials:
        etag = partial.name.split(".", 1)[0]
        lock = _lock_is_free(locks / f"{etag}.lock")
        if lock is None:
            continue  # a live download writes it
        try:
            blob, sib = blobs / etag, by_etag.get(etag)
            if sib is not None and not blob.exists() and partial.exists():
                kept = _resume(repo_id, info.sha, sib, partial, blob)
                if kept is not None:
                    report["resumed"][sib.rfilename] = kept
                    report["need"] = max(0, report["need"] - (sib.lfs.size if sib.lfs else sib.size or 0))
                    continue
            if partial.exists():
                partial.unlink()
                report["removed"].append(str(partial))
        finally:
            lock.release()
    return report


def _resume(repo_id: str, commit: str, sib, partial: Path, blob: Path) -> int | None:
    """Fetch the rest of `partial` with a Range request and move it into place as `blob`; the bytes it already
    held, or None when that did not work (the partial is then removed by the caller)."""
    import logging

    from huggingface_hub import hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    size = sib.lfs.size if sib.lfs else sib.size
    kept = partial.stat().st_size
    if size is None or kept > size:
        return None
    DOWNLOAD.start(f"the rest of {sib.rfilename} ({repo_id})")
    try:
        with open(partial, "ab") as f:
            http_get(
                hf_hub_url(repo_id, sib.rfilename, revision=commit),
                f,
                resume_size=kept,
                headers=build_hf_headers(),
                expected_size=size,
                tqdm_class=_recording_tqdm(),
            )
        if partial.stat().st_size != size:
            return None
        os.replace(partial, blob)
        return kept
    except Exception as e:  # the full download follows
        logging.getLogger(__name__).warning("could not resume %s (%s): fetching it whole", sib.rfilename, e)
        return None
    finally:
        DOWNLOAD.finish()


def _http_status(e: BaseException) -> int | None:
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        response = getattr(e, "response", None)
        if response is not None and getattr(response, "status_code", None):
            return response.status_code
        e = e.__cause__ or e.__context__
    return None


def _chain_has(e: BaseException, names: tuple[str, ...]) -> bool:
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if any(c.__name__ in names for c in type(e).__mro__):
            return True
        e = e.__cause__ or e.__context__
    return False


def download_failure_sentence(e: BaseException, what: str, repo: str, offline: str) -> str:
    """What went wrong with a hub download, and what to do, in one sentence per cause."""
    import errno

    from huggingface_hub import constants

    endpoint = _endpoint()
    page = f"{endpoint}/{repo}"
    if isinstance(e, WeightsUnavailable):
        return e.message
    if _chain_has(e, ("GatedRepoError",)):
        return (
            f"The {what} weights '{repo}' are gated: accept the licence on {page} while logged in, then give "
            "this machine your token (`hf auth login`, or the environment variable HF_TOKEN) and start again."
        )
    if _chain_has(e, ("RepositoryNotFoundError",)):
        return (
            f"There is no model '{repo}' on {endpoint}: check the name (the published reasoners are "
            f"{' and '.join(KNOWN_REASONERS)}); if it is private, log in first (`hf auth login` or HF_TOKEN)."
        )
    if _chain_has(e, ("RemoteEntryNotFoundError", "EntryNotFoundError")) and not _chain_has(
        e, ("LocalEntryNotFoundError",)
    ):
        return f"'{repo}' on {endpoint} has no file the {what} needs ({e}): check the name or the revision."
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return (
            f"The disk filled up while fetching '{repo}' into {_hub_cache_dir()}: free some space there, or "
            "set HF_HOME to a folder on a disk with room, and start again."
        )
    status = _http_status(e)
    if status is not None and status >= 500:
        return (
            f"The hub at {endpoint} answered {status} (a fault on its side) while fetching the {what} weights "
            f"'{repo}': try again in a while; the files already fetched are kept."
        )
    if status == 401 or status == 403:
        return (
            f"The hub at {endpoint} refused access to '{repo}' ({status}): log in with a token that may read "
            "it (`hf auth login` or HF_TOKEN) and start again."
        )
    if constants.HF_HUB_OFFLINE or _chain_has(e, ("ConnectError", "OfflineModeIsEnabled", "ConnectTimeout")):
        return offline
    if _chain_has(e, ("RemoteProtocolError", "ReadError", "ReadTimeout", "TimeoutException")) or (
        "Consistency check failed" in str(e)
    ):
        return (
            f"The connection to {endpoint} broke off while fetching the {what} weights '{repo}' (after "
            "retries): start again when the network is steady; the files already fetched are kept."
        )
    return offline + f" ({type(e).__name__}: {e})"


def local_sam_checkpoint(sam: str, size: str | None = None) -> tuple[SamSize, str] | None:
    """A `sam` that names a local checkpoint: its size (config) and path; None when it names a size (from the
    hub). A checkpoint that does not exist, whose size cannot be told, or an unknown size is refused here, in
    a moment, before any model loads."""
    if os.path.exists(sam):
        found = sam_size(size) if size else sam_size_from_filename(sam)
        if found is None:
            raise WeightsUnavailable(
                f"Cannot tell the SAM2 size of {sam} from its name: pass --sam-size tiny|small|base_plus|large.",
                code="bad_sam_size",
            )
        return found, sam
    if sam.endswith(".pt") or os.sep in sam:
        raise WeightsUnavailable(f"The SAM2 checkpoint {sam} does not exist.", code="bad_sam_checkpoint")
    sam_size(sam)
    return None


def resolve_sam_checkpoint(sam: str, size: str | None = None) -> tuple[SamSize, str]:
    """`sam` is a size name or a checkpoint path; returns the size (config) and a local checkpoint path."""
    local = local_sam_checkpoint(sam, size)
    if local is not None:
        return local
    spec = sam_size(sam)
    from huggingface_hub import hf_hub_download

    report = prepare_cache(spec.hub_id, [spec.filename])
    DOWNLOAD.start(f"SAM2.1 {spec.name}", report["need"])
    try:
        return spec, hf_hub_download(spec.hub_id, spec.filename, tqdm_class=_recording_tqdm())
    except Exception as e:
        offline = _offline_sentence("SAM2.1", spec.hub_id, spec.filename, "--sam").replace(
            "--sam DIR", f"--sam DIR/{spec.filename}"
        )
        raise WeightsUnavailable(download_failure_sentence(e, "SAM2.1", spec.hub_id, offline)) from e
    finally:
        DOWNLOAD.finish()


#: Meta's short checkpoint names (sam2.1_hiera_t.pt ...), next to the hub's long ones (sam2.1_hiera_tiny.pt ...)
SHORT_NAMES = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}


def sibling_sam_checkpoint(checkpoint: str | os.PathLike, size: str) -> str:
    """The checkpoint of another SAM2.1 size in the folder of a local one: sam2.1_hiera_{t,s,b+,l}.pt (or the
    hub's file name). Missing, it is a BadInput naming the files looked for and the folder."""
    from .errors import BadInput

    spec = sam_size(size)
    folder = Path(os.path.abspath(checkpoint)).parent  # not resolve(): a linked checkpoint keeps its folder
    names = [f"sam2.1_hiera_{SHORT_NAMES[spec.name]}.pt", spec.filename]
    for name in names:
        if (folder / name).is_file():
            return str(folder / name)
    raise BadInput(
        f"SAM2.1 {spec.name} is not available: the service was started with a local checkpoint and there is no "
        f"{' or '.join(names)} in {folder}. Put the {spec.name} checkpoint there (from "
        f"https://huggingface.co/{spec.hub_id}) or ask for the size the service has.",
        code="sam_size_unavailable",
    )


def cached_models() -> list[dict]:
    """What the Hugging Face cache holds of the models Think2Seg uses."""
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir()
    except Exception:
        return []
    wanted = set(KNOWN_REASONERS) | {s.hub_id for s in SAM_SIZES.values()}
    return [
        {"id": r.repo_id, "size_mb": round(r.size_on_disk / 1e6, 1), "path": str(r.repo_path)}
        for r in info.repos
        if r.repo_id in wanted
    ]
