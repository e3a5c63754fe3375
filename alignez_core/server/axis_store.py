"""The axes a server's requests may name: the presets' shipped packs and uploaded files.

An upload is validated as the studio validates one (an axis pack, a llama.cpp control vector or
a steering-vectors file, for the loaded model's shape) and named `<pack name>@<12 hex of the
file's SHA-256>`, so two different uploads never take each other's name and the same file sent
twice is one axis. Uploads are kept per model and capped in size and count.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
from pathlib import Path

from alignez_core.axes.pack import AxisPack
from alignez_core.axes.prefit import prefitted_names, prefitted_pack
from alignez_core.engine.model import LoadedModel
from alignez_core.errors import AlignEZError, PackError
from alignez_core.interop import load_axis_file

MAX_UPLOAD_BYTES = 16 * 1024 * 1024  # a pack for a 135M–270M model is ~0.3 MB
MAX_UPLOADS = 64  # per model; the oldest is not evicted (a request naming it must not break)
UPLOAD_SUFFIXES = (".safetensors", ".gguf")


class UnknownAxisError(AlignEZError):
    """A request named an axis the server does not hold."""


class AxisStore:
    """Name → pack for the model a server holds; safe to share between request threads."""

    def __init__(
        self, max_uploads: int = MAX_UPLOADS, max_upload_bytes: int = MAX_UPLOAD_BYTES
    ) -> None:
        self.max_uploads = max_uploads
        self.max_upload_bytes = max_upload_bytes
        self._lock = threading.Lock()
        self._uploads: dict[str, dict[str, AxisPack]] = {}  # model id → name → pack
        self._presets: dict[tuple[str, str], AxisPack] = {}

    def names(self, lm: LoadedModel) -> list[str]:
        """Every axis a request may name on `lm`: shipped presets first, then uploads."""
        with self._lock:
            uploaded = sorted(self._uploads.get(lm.model_id, {}))
        return prefitted_names(lm.model_id) + uploaded

    def get(self, name: str, lm: LoadedModel) -> AxisPack:
        """The pack called `name` on `lm`, or UnknownAxisError listing what there is."""
        with self._lock:
            pack = self._uploads.get(lm.model_id, {}).get(name)
            if pack is None and (key := (lm.model_id, name)) in self._presets:
                pack = self._presets[key]
        if pack is not None:
            return pack
        if name in prefitted_names(lm.model_id):
            pack = prefitted_pack(name, lm)
            with self._lock:
                self._presets[(lm.model_id, name)] = pack
            return pack
        known = ", ".join(self.names(lm)) or "none"
        raise UnknownAxisError(f"Unknown axis {name!r} for {lm.model_id} (known: {known}).")

    def upload(self, data: bytes, filename: str, lm: LoadedModel) -> tuple[str, AxisPack]:
        """Validate an uploaded file and keep it; returns its name and pack."""
        if not data:
            raise PackError("The uploaded file is empty.")
        if len(data) > self.max_upload_bytes:
            raise PackError(
                f"The upload is {len(data)} bytes; axis files are capped at "
                f"{self.max_upload_bytes} bytes here."
            )
        suffix = Path(filename or "axis.safetensors").suffix.lower() or ".safetensors"
        if suffix not in UPLOAD_SUFFIXES:
            kinds = ", ".join(UPLOAD_SUFFIXES)
            raise PackError(f"Upload an axis pack or a control vector ({kinds}).")
        digest = hashlib.sha256(data).hexdigest()[:12]
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"upload{suffix}"
            path.write_bytes(data)
            pack = load_axis_file(path, lm, name=Path(filename or "axis").stem)
        name = f"{pack.name}@{digest}"
        with self._lock:
            mine = self._uploads.setdefault(lm.model_id, {})
            if name not in mine and len(mine) >= self.max_uploads:
                raise PackError(
                    f"This server holds {self.max_uploads} uploaded axes for {lm.model_id}, "
                    "its cap; use one of them (GET /v1/axes) or a preset."
                )
            mine.setdefault(name, pack)
        return name, mine[name]
