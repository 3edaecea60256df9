"""Audio I/O: every clip enters the framework through `load_audio`, as float32 mono at one rate.

Models want one sampling rate and one channel; users' files come in whatever they were recorded
in. So a file at another rate is resampled (soxr) and a multichannel file is averaged to mono,
never rejected. What cannot be fixed (a missing, unreadable, empty, or NaN-filled file, a slice
outside the file, a clip over the model's length limit) raises `AudioError`, whose `reason` is
short enough to sit after "field 'audio':" in a manifest report and whose `field` says which
manifest field to fix.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SLICE_END_TOLERANCE_S = 0.01
"""A slice may end this far past the end of its file and is then cut at the end: manifests
usually round timestamps to 2 decimals, and rejecting a row for 5 ms of rounding helps nobody."""

# Errors soundfile/libsndfile raise for bad files (LibsndfileError is a RuntimeError).
_READ_ERRORS = (RuntimeError, OSError, ValueError, TypeError, EOFError)


class AudioError(Exception):
    """A clip that cannot be used, with the reason and the manifest field to fix."""

    def __init__(self, reason: str, *, field: str = "audio", path: Path | str | None = None):
        self.reason = reason
        self.field = field
        self.path = path
        super().__init__(f"{path}: {reason}" if path is not None else reason)


def resolve_audio_path(folder: Path, audio: str) -> Path:
    """`audio` (a manifest's path string) resolved against the manifest's `folder`; an
    AudioError, not a crash, for a path the system cannot take (a NUL byte, a symlink loop)."""
    if "\x00" in audio:
        raise AudioError("contains a NUL byte, which no file path can hold")
    try:
        return (folder / audio).resolve()
    except (OSError, RuntimeError, ValueError) as e:
        raise AudioError(f"cannot be resolved ({e})") from e


def shown_path(audio: str) -> str:
    """A manifest's path string as a message shows it: quoted and escaped when it holds
    characters a terminal would swallow (NUL, control characters)."""
    return audio if audio.isprintable() else repr(audio)


def _seconds(value: float) -> str:
    """'41.2 s', '30.0 s', '0.005 s': short but never rounds a small value to zero."""
    return f"{round(float(value), 3)} s"


def is_number(value: object) -> bool:
    """A finite int or float (not a bool): what offsets, durations and timestamps must be."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # a JSON integer beyond any float (10**400)
        return False


def slice_frames(
    frames: int,
    sampling_rate: int,
    offset: float = 0.0,
    duration: float | None = None,
    max_duration_s: float | None = None,
    *,
    path: Path | str | None = None,
) -> tuple[int, int]:
    """(start, count) in frames of the slice `offset`..`offset+duration` of a file.

    Shared by `load_audio` and the header-only manifest check, so both reject the same slices
    with the same words. Checks run on header facts only: a too-long clip is refused before a
    single sample of it is decoded.
    """
    if frames <= 0:
        raise AudioError("empty (0 samples)", path=path)
    if not is_number(offset) or offset < 0:
        raise AudioError(
            f"offset must be a non-negative number of seconds, got {offset!r}",
            field="offset",
            path=path,
        )
    if duration is not None and (not is_number(duration) or duration <= 0):
        raise AudioError(
            f"duration must be a positive number of seconds, got {duration!r}",
            field="duration",
            path=path,
        )
    total_s = frames / sampling_rate
    if offset >= total_s:
        raise AudioError(
            f"offset {_seconds(offset)} is past the end ({_seconds(total_s)})",
            field="offset",
            path=path,
        )
    end_s = total_s if duration is None else offset + duration
    if end_s > total_s + SLICE_END_TOLERANCE_S:
        raise AudioError(
            f"slice {_seconds(offset)} to {_seconds(end_s)} runs past the end "
            f"({_seconds(total_s)})",
            field="duration",
            path=path,
        )
    start = round(offset * sampling_rate)
    stop = min(round(end_s * sampling_rate), frames)
    count = stop - start
    if count <= 0:
        raise AudioError("empty (0 samples)", field="duration", path=path)
    seconds = count / sampling_rate
    if max_duration_s is not None and seconds > max_duration_s:
        raise AudioError(
            f"too long: {_seconds(seconds)} > max {_seconds(max_duration_s)}",
            field="audio" if duration is None else "duration",
            path=path,
        )
    return start, count


def _unreadable(e: Exception, path: Path) -> AudioError:
    # libsndfile errors repeat the path ("Error opening '/x/a.wav': ..."); keep only the cause.
    cause = getattr(e, "error_string", None) or str(e)
    return AudioError(f"unreadable: {cause}", path=path)


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise AudioError("file not found", path=path)
    if not path.is_file():
        raise AudioError("not a regular file", path=path)


def audio_info(path: Path | str) -> tuple[int, int]:
    """(frames, sampling rate) from the file header, without decoding any samples."""
    path = Path(path)
    _check_exists(path)
    try:
        info = sf.info(str(path))
    except _READ_ERRORS as e:
        raise _unreadable(e, path) from None
    if info.samplerate <= 0:
        raise AudioError(f"unreadable: sampling rate {info.samplerate} in header", path=path)
    return info.frames, info.samplerate


def audio_duration(path: Path | str) -> float:
    """Length in seconds from the file header: cheap enough to call on every manifest row."""
    frames, rate = audio_info(path)
    return frames / rate


def load_audio(
    path: Path | str,
    sampling_rate: int = 16000,
    offset: float = 0.0,
    duration: float | None = None,
    *,
    max_duration_s: float | None = None,
) -> np.ndarray:
    """Float32 mono samples in [-1, 1] at `sampling_rate`, of the slice `offset`..+`duration` s.

    Only the slice is read (seek + read), so slices of hour-long recordings stay cheap. Values are
    clipped to [-1, 1] because resampling can overshoot full-scale audio by a few percent.
    """
    if sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be positive, got {sampling_rate}")
    path = Path(path)
    _check_exists(path)
    try:
        with sf.SoundFile(str(path)) as f:
            file_rate = f.samplerate
            if file_rate <= 0:
                raise AudioError(f"unreadable: sampling rate {file_rate} in header", path=path)
            start, count = slice_frames(
                f.frames, file_rate, offset, duration, max_duration_s, path=path
            )
            if start:
                if f.seekable():
                    f.seek(start)
                else:
                    f.read(start, dtype="float32")
            data = f.read(count, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except _READ_ERRORS as e:
        raise _unreadable(e, path) from None

    if len(data) == 0:
        raise AudioError("empty (0 samples)", path=path)
    if len(data) < count:
        # The header promised more than the file holds: a cut-off download or copy.
        raise AudioError(
            f"truncated: header says {count} samples from offset, only {len(data)} readable",
            path=path,
        )
    if not np.isfinite(data).all():
        raise AudioError("contains NaN/inf samples", path=path)

    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if file_rate != sampling_rate:
        mono = soxr.resample(mono, file_rate, sampling_rate)
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    np.clip(mono, -1.0, 1.0, out=mono)
    if len(mono) == 0:
        raise AudioError("empty (0 samples after resampling)", path=path)
    return mono
