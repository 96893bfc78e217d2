"""The registry of pretrained weights: every network the project loads, and where its file comes from.

Files cannot be downloaded at run time (offline clusters and CI). Each entry names the file (or folder)
to place under the weights directory (``$PT_WEIGHTS_DIR``, default ``~/.cache/personatalk/weights``),
where to get it, its licence and, where known, its SHA-256 (or the 8-hex prefix that torch-hub file
names carry). Asking for a missing one raises :class:`MissingWeightsError` naming all of that.
Networks whose weights ship inside a wheel (MediaPipe's face mesh, the ``lpips`` linear heads) are listed
with ``bundled=True`` and are always present.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

WEIGHTS_ENV = "PT_WEIGHTS_DIR"


class MissingWeightsError(FileNotFoundError):
    """A pretrained file is not under the weights directory; the message says what, where and from where."""


class WeightsChecksumError(ValueError):
    """A weights file is present but its checksum is not the registered one."""


@dataclass(frozen=True)
class WeightSpec:
    """One pretrained network's files."""

    name: str
    filename: str  # relative to the weights directory; a folder when ``is_dir``
    source: str  # where users get it
    licence: str
    used_by: str
    sha256: str = ""  # full hex digest or a prefix (torch-hub names carry 8 hex digits); "" = unknown
    is_dir: bool = False
    bundled: str = ""  # a Python package whose wheel carries the weights (always present)
    note: str = ""


_SPECS: tuple[WeightSpec, ...] = (
    WeightSpec("hubert-base-ls960", "hubert-base-ls960",
               "https://huggingface.co/facebook/hubert-base-ls960 (folder with config.json + model weights; "
               "e.g. `huggingface-cli download facebook/hubert-base-ls960 --local-dir DIR` on a connected machine)",
               "Apache-2.0", "stage 1 audio encoder (HubertModel)", is_dir=True),
    WeightSpec("hubert-large-ls960-ft", "hubert-large-ls960-ft",
               "https://huggingface.co/facebook/hubert-large-ls960-ft (folder with config.json + model weights)",
               "Apache-2.0", "stage 1 audio encoder, large variant", is_dir=True),
    WeightSpec("syncnet_v2", "syncnet_v2.model",
               "joonson/syncnet_python, data/syncnet_v2.model (download_model.sh; "
               "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model)",
               "MIT (syncnet_python)", "SyncScore (LSE-C / LSE-D), optional curation sync filter"),
    WeightSpec("arcface-w600k-r50", "buffalo_l/w600k_r50.onnx",
               "insightface model zoo, buffalo_l.zip (https://github.com/deepinsight/insightface/tree/master/model_zoo)",
               "non-commercial research only (insightface models)", "CSIM (identity cosine)"),
    WeightSpec("fid-inception", "pt_inception-2015-12-05-6726825d.pth",
               "pytorch-fid release fid_weights (https://github.com/mseitzer/pytorch-fid/releases/download/"
               "fid_weights/pt_inception-2015-12-05-6726825d.pth)",
               "Apache-2.0", "FID (Inception-v3 pool3 features)", sha256="6726825d"),
    WeightSpec("lpips-alexnet", "alexnet-owt-7be5be79.pth",
               "torchvision (https://download.pytorch.org/models/alexnet-owt-7be5be79.pth)",
               "BSD-3-Clause", "LPIPS backbone (AlexNet)", sha256="7be5be79"),
    WeightSpec("vgg16", "vgg16-397923af.pth",
               "torchvision (https://download.pytorch.org/models/vgg16-397923af.pth)",
               "BSD-3-Clause", "stage 2 perceptual loss, LPIPS-VGG backbone", sha256="397923af"),
    WeightSpec("hyperiqa-koniq", "hyperiqa/koniq_pretrained.pkl",
               "SSL-Yuan/hyperIQA README (koniq_pretrained.pkl, Google Drive link); a torch state dict",
               "research code, no licence stated", "curation image-quality filter (paper's HyperIQA)"),
    WeightSpec("hyperiqa-resnet50", "resnet50-19c8e357.pth",
               "torchvision (https://download.pytorch.org/models/resnet50-19c8e357.pth)",
               "BSD-3-Clause", "HyperIQA backbone initialisation (training HyperIQA only)", sha256="19c8e357"),
    WeightSpec("style-encoder", "style_encoder/personatalk_style.pt",
               "train it: pt train style --shards DIR --out RUN, then copy RUN/style_encoder.pt",
               "same as the training data", "StyleSim (speaking-style encoder, pt_bench.style_encoder)"),
    WeightSpec("lpips-heads", "(inside the lpips wheel)", "pip install lpips==0.1.4", "BSD-2-Clause",
               "LPIPS linear heads", bundled="lpips"),
    WeightSpec("mediapipe-face-mesh", "(inside the mediapipe wheel)", "pip install mediapipe==0.10.21",
               "Apache-2.0", "face landmarks (478 points)", bundled="mediapipe"),
    WeightSpec("mtcnn", "(inside the facenet-pytorch wheel)", "pip install facenet-pytorch==2.6.0", "MIT",
               "face detection fallback", bundled="facenet_pytorch"),
)


def default_weights_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$PT_WEIGHTS_DIR`` if set, else ``$XDG_CACHE_HOME/personatalk/weights`` (``~/.cache/...``)."""
    env = os.environ if env is None else env
    if env.get(WEIGHTS_ENV):
        return Path(env[WEIGHTS_ENV]).expanduser()
    cache = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "personatalk" / "weights"


@dataclass(frozen=True)
class WeightStatus:
    """Whether one registered file is present (and, when checked, whether its checksum matches)."""

    spec: WeightSpec
    path: Path | None
    present: bool
    size_bytes: int
    checksum_ok: bool | None  # None: not checked or no checksum known


class WeightsRegistry:
    """Look-ups of registered weights under one weights directory."""

    def __init__(self, weights_dir: str | os.PathLike | None = None,
                 specs: Iterable[WeightSpec] = _SPECS) -> None:
        self.weights_dir = Path(weights_dir).expanduser() if weights_dir is not None else default_weights_dir()
        self.specs = {s.name: s for s in specs}

    def spec(self, name: str) -> WeightSpec:
        try:
            return self.specs[name]
        except KeyError:
            raise KeyError(f"no weights named {name!r}; registered: {', '.join(sorted(self.specs))}") from None

    def path(self, name: str, *, verify: bool = False) -> Path:
        """The file (or folder) of ``name``; raises :class:`MissingWeightsError` when it is not there."""
        spec = self.spec(name)
        if spec.bundled:
            return Path(_package_dir(spec.bundled))
        p = self.weights_dir / spec.filename
        ok = p.is_dir() and any(p.iterdir()) if spec.is_dir else p.is_file() and p.stat().st_size > 0
        if not ok:
            what = "folder" if spec.is_dir else "file"
            raise MissingWeightsError(
                f"pretrained weights {name!r} are missing: expected the {what} {p} "
                f"(weights directory {self.weights_dir}, set ${WEIGHTS_ENV} to change it). "
                f"Get it from: {spec.source}. Licence: {spec.licence}. Needed by: {spec.used_by}.")
        if verify and spec.sha256 and not spec.is_dir:
            digest = sha256_file(p)
            if not digest.startswith(spec.sha256.lower()):
                raise WeightsChecksumError(f"{p}: SHA-256 {digest[:16]}... does not match the registered "
                                           f"{spec.sha256} for {name!r}; re-download it from {spec.source}")
        return p

    def status(self, *, verify: bool = False) -> list[WeightStatus]:
        """One :class:`WeightStatus` per registered entry, in registry order."""
        out = []
        for spec in self.specs.values():
            if spec.bundled:
                present = _package_dir(spec.bundled) is not None
                out.append(WeightStatus(spec, None, present, 0, None))
                continue
            p = self.weights_dir / spec.filename
            present = p.is_dir() and any(p.iterdir()) if spec.is_dir else p.is_file() and p.stat().st_size > 0
            size = (sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if spec.is_dir else p.stat().st_size
                    ) if present else 0
            ok = None
            if present and verify and spec.sha256 and not spec.is_dir:
                ok = sha256_file(p).startswith(spec.sha256.lower())
            out.append(WeightStatus(spec, p, present, size, ok))
        return out


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _package_dir(package: str) -> str | None:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def registered_weights() -> tuple[WeightSpec, ...]:
    """All registered entries."""
    return _SPECS
