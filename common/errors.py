"""Project exceptions. User-facing problems raise a :class:`HeadVeilError` subclass."""

from __future__ import annotations


class HeadVeilError(Exception):
    """Base class for errors caused by user input or the environment, not by a bug."""


class SettingsError(HeadVeilError, ValueError):
    """A command's settings are out of range or inconsistent."""


class ImageReadError(HeadVeilError, ValueError):
    """An image file could not be read or decoded (missing, truncated, not an image)."""


class NoFaceFoundError(HeadVeilError):
    """A landmark detector found no face in an image."""

    def __init__(self, source: str, detector: str):
        self.source = source
        self.detector = detector
        super().__init__(f"no face found in {source} (detector: {detector})")


class FaceTooSmallError(HeadVeilError):
    """The detected face is too small to fit reliably."""


class MissingDependencyError(HeadVeilError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""

    def __init__(self, what: str, extra: str, cause: BaseException | None = None):
        msg = f"{what} is not available: install `headveil[{extra}]` (see README: `make setup`)"
        if cause is not None:
            msg += f" [{type(cause).__name__}: {cause}]"
        super().__init__(msg)


class BackendUnavailableError(HeadVeilError, RuntimeError):
    """An explicitly requested backend cannot run on this machine."""


class ExtremePoseError(HeadVeilError):
    """The fitted head pose is beyond the range the fitter and re-rendering handle."""


class ReidentifiedError(HeadVeilError):
    """A protected output is still matched to the original by a recognizer (re-identification guard)."""
