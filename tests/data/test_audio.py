"""load_audio: what a user's odd files turn into, and the words used when they cannot be used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiolora.data.audio import AudioError, audio_duration, load_audio


def write_sine(
    path: Path,
    seconds: float = 1.0,
    sr: int = 16000,
    channels: int = 1,
    freq: float = 440.0,
    subtype: str | None = None,
) -> Path:
    t = np.arange(round(seconds * sr)) / sr
    wave = 0.5 * np.sin(2 * np.pi * freq * t)
    data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
    sf.write(path, data, sr, subtype=subtype)
    return path


def test_stereo_44k_file_loads_as_16k_mono_of_the_same_length(tmp_path: Path) -> None:
    path = write_sine(tmp_path / "stereo.wav", seconds=2.0, sr=44100, channels=2)
    audio = load_audio(path, sampling_rate=16000)
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert len(audio) == 32000
    assert 0.45 < np.abs(audio).max() <= 0.55


def test_downmix_averages_channels(tmp_path: Path) -> None:
    left = np.full(1600, 0.8)
    right = np.full(1600, 0.2)
    sf.write(tmp_path / "lr.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "lr.wav"), 0.5, atol=1e-6)


def test_offset_and_duration_return_exactly_that_slice(tmp_path: Path) -> None:
    ramp = np.linspace(-1, 1, 16000, dtype=np.float32)  # every sample unique: position is visible
    sf.write(tmp_path / "ramp.wav", ramp, 16000, subtype="FLOAT")
    clip = load_audio(tmp_path / "ramp.wav", offset=0.25, duration=0.5)
    np.testing.assert_array_equal(clip, ramp[4000:12000])
    tail = load_audio(tmp_path / "ramp.wav", offset=0.75)
    np.testing.assert_array_equal(tail, ramp[12000:])


def test_audio_duration_comes_from_the_header(tmp_path: Path) -> None:
    path = write_sine(tmp_path / "a.wav", seconds=2.5, sr=22050)
    assert audio_duration(path) == pytest.approx(2.5)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="file not found") as err:
        load_audio(tmp_path / "nope.wav")
    assert err.value.field == "audio"


def test_random_bytes_named_wav_are_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(AudioError, match="unreadable") as err:
        load_audio(path)
    assert err.value.reason.startswith("unreadable: ")
    with pytest.raises(AudioError, match="unreadable"):
        audio_duration(path)


def test_corrupt_flac_data_is_found_when_decoding(tmp_path: Path) -> None:
    path = write_sine(tmp_path / "a.flac", seconds=2.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # header intact, audio frames cut off
    with pytest.raises(AudioError, match="unreadable"):
        load_audio(path)


def test_empty_wav(tmp_path: Path) -> None:
    sf.write(tmp_path / "empty.wav", np.zeros(0), 16000)
    with pytest.raises(AudioError, match=r"empty \(0 samples\)"):
        load_audio(tmp_path / "empty.wav")


def test_nan_samples(tmp_path: Path) -> None:
    data = np.sin(np.linspace(0, 20, 1600)).astype(np.float32)
    data[800] = np.nan
    sf.write(tmp_path / "nan.wav", data, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN/inf"):
        load_audio(tmp_path / "nan.wav")


def test_too_long_is_refused_with_both_lengths(tmp_path: Path) -> None:
    path = write_sine(tmp_path / "long.wav", seconds=3.0)
    with pytest.raises(AudioError, match=r"too long: 3.0 s > max 2.0 s"):
        load_audio(path, max_duration_s=2.0)
    assert len(load_audio(path, duration=1.5, max_duration_s=2.0)) == 24000


def test_offset_past_the_end_names_the_offset_field(tmp_path: Path) -> None:
    path = write_sine(tmp_path / "a.wav", seconds=1.0)
    with pytest.raises(AudioError, match=r"offset 2.0 s is past the end \(1.0 s\)") as err:
        load_audio(path, offset=2.0)
    assert err.value.field == "offset"


def test_slice_running_past_the_end_names_the_duration_field(tmp_path: Path) -> None:
    path = write_sine(tmp_path / "a.wav", seconds=1.0)
    with pytest.raises(AudioError, match="runs past the end") as err:
        load_audio(path, offset=0.5, duration=1.0)
    assert err.value.field == "duration"
    # Rounded timestamps that overshoot by a few milliseconds are cut at the end instead.
    assert len(load_audio(path, offset=0.5, duration=0.505)) == 8000


def test_negative_offset(tmp_path: Path) -> None:
    path = write_sine(tmp_path / "a.wav")
    with pytest.raises(AudioError, match="non-negative") as err:
        load_audio(path, offset=-1.0)
    assert err.value.field == "offset"


def test_float_file_louder_than_full_scale_is_clipped(tmp_path: Path) -> None:
    sf.write(tmp_path / "hot.wav", np.full(1600, 1.7, dtype=np.float32), 16000, subtype="FLOAT")
    assert np.abs(load_audio(tmp_path / "hot.wav")).max() <= 1.0
