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
    "RicardoString/Think2Seg-RS-3B": "fine-tuned Qwen2.5-VL-3B-Instruct (base under the Qwen research licence: check it)",
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
    "small": SamSize("small", "configs/sam2.1/sam2.1_hiera_s.yaml", "facebook/sam2.1-hiera-small", "sam2.1_hiera_small.pt"),
    "base_plus": SamSize(
        "base_plus", "configs/sam2.1/sam2.1_hiera_b+.yaml", "facebook/sam2.1-hiera-base-plus", "sam2.1_hiera_base_plus.pt"
    ),
    "large": SamSize("large", "configs/sam2.1/sam2.1_hiera_l.yaml", "facebook/sam2.1-hiera-large", "sam2.1_hiera_large.pt"),
}
_SIZE_ALIASES = {
    "t": "tiny", "tiny": "tiny", "s": "small", "small": "small",
    "b+": "base_plus", "b_plus": "base_plus", "base_plus": "base_plus", "base-plus": "base_plus", "baseplus": "base_plus",
    "l": "large", "large": "large",
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
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def start(self, what: str) -> None:
        with self.lock:
            self.what, self.bars = what, {}

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
            total = sum(t for _, t in self.bars.values())
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
            if getattr(self, "unit", "") == "B":
                DOWNLOAD.record(id(self), self.n, self.total or 0)
            return shown

    return RecordingTqdm


def _offline_sentence(what: str, repo: str, files: str, where: str) -> str:
    return (
        f"The {what} weights '{repo}' are not on this machine and the Hugging Face hub cannot be reached. "
        f"On a machine with internet, fetch {files} from https://huggingface.co/{repo} "
        f"(for example `huggingface-cli download {repo} --local-dir DIR`), copy DIR here and pass {where} DIR."
    )


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

    DOWNLOAD.start(f"reasoner {model}")
    try:
        return snapshot_download(
            model,
            allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"],
            tqdm_class=_recording_tqdm(),
        )
    except HFValidationError as e:
        raise WeightsUnavailable(
            f"'{model}' is neither a local folder nor a valid hub id ({e}).", code="bad_model"
        ) from e
    except Exception as e:  # offline, unknown repo, gated repo: all end in the same actionable sentence
        raise WeightsUnavailable(
            _offline_sentence("reasoner", model, "config.json, the *.safetensors files, the tokenizer and processor files", "--model")
            + f" ({type(e).__name__})"
        ) from e
    finally:
        DOWNLOAD.finish()


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

    DOWNLOAD.start(f"SAM2.1 {spec.name}")
    try:
        return spec, hf_hub_download(spec.hub_id, spec.filename, tqdm_class=_recording_tqdm())
    except Exception as e:
        raise WeightsUnavailable(
            _offline_sentence("SAM2.1", spec.hub_id, spec.filename, "--sam").replace("--sam DIR", f"--sam DIR/{spec.filename}")
            + f" ({type(e).__name__})"
        ) from e
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
