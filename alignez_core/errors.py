"""Errors the engine raises on purpose, each with a message a user can act on."""

from __future__ import annotations


class AlignEZError(Exception):
    """Base class: every deliberate failure of the engine is one of these."""


class ModelLoadError(AlignEZError):
    """A model spec could not be turned into a loaded model."""


class UnsupportedModelError(AlignEZError):
    """The model loaded but its decoder layers or MLPs could not be found."""


class EditError(AlignEZError, ValueError):
    """An edit is malformed: bad strength, wrong hidden size, unknown rule or layer."""


class FitError(AlignEZError):
    """Fitting an axis failed (no usable pairs, empty generations, cancelled...)."""


class FitCancelled(FitError):
    """The caller asked a running fit to stop."""


class PackError(AlignEZError, ValueError):
    """An axis pack file is corrupt, foreign, or made for another model."""


class ForeignPackError(PackError):
    """A readable safetensors file that is not an AlignEZ axis pack (maybe another tool's)."""
