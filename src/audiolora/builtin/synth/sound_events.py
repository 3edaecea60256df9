"""`audiolora data synth sound-events OUT`: an ESC-style set of real recorded sounds, and pairs.

Why Debian packages: no sound-event corpus is reachable offline, but games and music software
ship recorded effects under free licences (footsteps, breaking glass, doors, animals, drums,
bells). `apt-get download` + `dpkg-deb -x` fetches them without installing anything. Each class is
a rule over file paths in one package; every clip records its package, source file and the
licence the package's DEP-5 copyright file gives that file.

What is written:
- one-second event cuts (the loudest second of each source file), split per class into
  training and held-out source files (never the same recording on both sides);
- single-event clips (an event at a random place in `TOTAL_S` seconds of silence);
- pairs of two classes from the same split: A then B (a gap between), the reversed pair
  B then A (the same cuts swapped), and A while B (overlay at a random level and offset);
- `train.jsonl`, `eval.jsonl`, `classes.json`, `dataset.json` (what was built, from which seed).
Reproducible from the seed; every download and decode has a timeout or a clear error.
"""

from __future__ import annotations

import fnmatch
import io
import json
import logging
import random
import re
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
from tqdm import tqdm

from audiolora.atomic import atomic_write_json
from audiolora.cache import cache_dir
from audiolora.data.sound_events import (
    caption,
    compose_sequence,
    fit_length,
    overlay,
    reverse_pair,
)

log = logging.getLogger(__name__)

SAMPLE_RATE = 44100
EVENT_S = 1.0
GAP_S = 0.25
TOTAL_S = 2 * EVENT_S + GAP_S
PEAK = 0.5
"""Peak of every event cut: two overlaid events stay below full scale at 0 dB."""
DOWNLOAD_TIMEOUT_S = 600

PACKAGES = {
    "ufoai-sound": "usr/share/games/ufoai/base/0snd.pk3",
    "sonic-pi-samples": "usr/share/sonic-pi/samples",
    "wesnoth-1.16-data": "usr/share/games/wesnoth/1.16/data/core/sounds",
    "lmms-common": "usr/share/lmms/samples",
    "sound-theme-freedesktop": "usr/share/sounds/freedesktop/stereo",
}
"""Debian package -> where its sounds are (a folder, or a zip archive) in the package tree."""

CLASSES: dict[str, tuple[str, str]] = {
    "footsteps on gravel": ("ufoai-sound", r"footsteps/gravel\d"),
    "footsteps on snow": ("ufoai-sound", r"footsteps/snow\d"),
    "footsteps on wood": ("ufoai-sound", r"footsteps/wood\d"),
    "footsteps on stone": ("ufoai-sound", r"footsteps/stone\d"),
    "footsteps on grass": ("ufoai-sound", r"footsteps/grass\d"),
    "splashing water": ("ufoai-sound", r"footsteps/splash\d"),
    "glass breaking": ("ufoai-sound", r"misc/breakglass"),
    "wood breaking": ("ufoai-sound", r"misc/breakwood"),
    "metal crashing": ("ufoai-sound", r"misc/breakmetal"),
    "a door opening": ("ufoai-sound", r"doors/door\d"),
    "an explosion": ("ufoai-sound", r"weapons/explosion"),
    "gunfire": ("ufoai-sound", r"weapons/bullet-(rifle|smg|pistol|sniper|shotgun)"),
    "a laser blast": ("ufoai-sound", r"weapons/laser-"),
    "a man crying out in pain": ("ufoai-sound", r"soldiers/malehurt"),
    "a woman crying out": ("ufoai-sound", r"soldiers/female(hurt|death)"),
    "a mouse click": ("ufoai-sound", r"ui/click"),
    "a monster growling": ("ufoai-sound", r"aliens/ortnok/"),
    "a bullet impact": ("ufoai-sound", r"impact/.*-impact"),
    "an engine running": ("ufoai-sound", r"ugv/"),
    "a wolf growling": ("wesnoth-1.16-data", r"^wolf-growl"),
    "a bow shot": ("wesnoth-1.16-data", r"^(cross)?bow(-puny)?(-fire)?(-miss)?\.ogg"),
    "a magic spell": ("wesnoth-1.16-data", r"^magic-holy"),
    "an orc roaring": ("wesnoth-1.16-data", r"^orc-"),
    "a troll grunting": ("wesnoth-1.16-data", r"^troll-"),
    "a zombie moaning": ("wesnoth-1.16-data", r"^zombie-"),
    "a skeleton rattling": ("wesnoth-1.16-data", r"^skeleton-"),
    "a gryphon screeching": ("wesnoth-1.16-data", r"^gryphon-"),
    "a horse neighing": ("wesnoth-1.16-data", r"^horse-(hit|die)"),
    "a snake hissing": ("wesnoth-1.16-data", r"^hiss"),
    "a goblin squealing": ("wesnoth-1.16-data", r"^goblin-"),
    "an ogre grunting": ("wesnoth-1.16-data", r"^ogre-"),
    "a bat squeaking": ("wesnoth-1.16-data", r"^bat-hit"),
    "a dragon roaring": ("wesnoth-1.16-data", r"^drake-"),
    "a whoosh": ("wesnoth-1.16-data", r"^throw-\d"),
    "a kick drum": ("sonic-pi-samples", r"^bd_"),
    "a tabla": ("sonic-pi-samples", r"^tabla_"),
    "an electronic beep": ("sonic-pi-samples", r"^elec_(beep|blip|blup|ping|plip|tick|twip)"),
    "a robot voice": ("sonic-pi-samples", r"^mehackit_robot"),
    "a vinyl record scratching": ("sonic-pi-samples", r"^vinyl_"),
    "a bass synthesizer": ("sonic-pi-samples", r"^bass_"),
    "an ambient drone": ("sonic-pi-samples", r"^ambi_"),
    "a snare drum": ("lmms-common", r"^drums/snare\d"),
    "a hi-hat": ("lmms-common", r"^drums/hihat_"),
    "hand claps": ("lmms-common", r"^drums/clap"),
    "a tom drum": ("lmms-common", r"^drums/tom"),
    "a cymbal crash": ("lmms-common", r"^drums/(crash|ride)"),
    "a shaker": ("lmms-common", r"^drums/shaker"),
    "a notification chime": (
        "sound-theme-freedesktop",
        r"^(message|dialog-|complete|bell|service-)",
    ),  # fmt: skip
    "a phone ringing": ("sound-theme-freedesktop", r"^phone-"),
}
"""Class name (what captions say) -> (package, regex searched in the path inside its sounds)."""

AUDIO_SUFFIXES = (".ogg", ".oga", ".wav", ".flac")


@dataclass(frozen=True)
class Source:
    package: str
    path: str
    """Path inside the package's sound folder or archive."""
    license: str


# ---- fetching ---------------------------------------------------------------------------------


def fetch_packages(root: Path, packages: list[str]) -> dict[str, Path]:
    """Each package's tree under `root` (downloaded and unpacked once, without installing)."""
    missing = [p for p in packages if not (root / p / ".complete").exists()]
    if missing:
        if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
            raise RuntimeError(
                f"the sound-event set needs the Debian packages {missing}, and apt-get / dpkg-deb "
                "are not available here: run on Debian/Ubuntu, or pass your own manifest"
            )
        with tempfile.TemporaryDirectory() as tmp:
            try:
                subprocess.run(["apt-get", "download", *missing], cwd=tmp, check=True,
                               capture_output=True, timeout=DOWNLOAD_TIMEOUT_S)  # fmt: skip
            except subprocess.CalledProcessError as e:
                raise RuntimeError(
                    f"apt-get download {' '.join(missing)} failed: {e.stderr.decode()[-500:]} "
                    "(is the package index current? try `apt-get update`)"
                ) from e
            for package in missing:
                deb = next(Path(tmp).glob(f"{package}_*.deb"))
                target = root / package
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir(parents=True)
                subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True,
                               timeout=DOWNLOAD_TIMEOUT_S)  # fmt: skip
                (target / ".complete").touch()
    return {p: root / p for p in packages}


def dep5_licenses(copyright_file: Path) -> list[tuple[list[str], str]]:
    """(file globs, licence) per paragraph of a DEP-5 copyright file, in file order."""
    if not copyright_file.exists():
        return []
    out = []
    for para in re.split(r"\n\s*\n", copyright_file.read_text(errors="replace")):
        files = re.search(r"^Files:\s*(.+(?:\n[ \t].+)*)", para, re.M)
        lic = re.search(r"^License:\s*(\S.*)$", para, re.M)
        if files and lic:
            out.append((files.group(1).split(), lic.group(1).strip()))
    return out


def license_of(path: str, paragraphs: list[tuple[list[str], str]], package: str) -> str:
    """The licence of the last paragraph whose globs match the file (by name), as DEP-5 says."""
    name = Path(path).name
    found = None
    for globs, lic in paragraphs:
        if any(g == "*" or fnmatch.fnmatch(name, Path(g).name) for g in globs):
            found = lic
    return f"{found or 'see copyright file'} ({package}, /usr/share/doc/{package}/copyright)"


def list_sources(trees: dict[str, Path]) -> Iterator[tuple[Source, Any]]:
    """Every audio file of the packages: (source, how to open it)."""
    for package, tree in trees.items():
        where = tree / PACKAGES[package]
        paragraphs = dep5_licenses(tree / "usr/share/doc" / package / "copyright")
        if where.suffix == ".pk3":
            with zipfile.ZipFile(where) as archive:
                for member in sorted(archive.namelist()):
                    if member.lower().endswith(AUDIO_SUFFIXES):
                        rel = member.removeprefix("sound/")
                        source = Source(package, rel, license_of(rel, paragraphs, package))
                        yield source, (where, member)
        else:
            for file in sorted(where.rglob("*")):
                if file.suffix.lower() in AUDIO_SUFFIXES:
                    rel = str(file.relative_to(where))
                    yield Source(package, rel, license_of(rel, paragraphs, package)), file


def read_source(handle: Any) -> tuple[np.ndarray, int]:
    if isinstance(handle, tuple):
        archive_path, member = handle
        with zipfile.ZipFile(archive_path) as archive:
            data, rate = sf.read(io.BytesIO(archive.read(member)), dtype="float32", always_2d=True)
    else:
        data, rate = sf.read(str(handle), dtype="float32", always_2d=True)
    return data.mean(axis=1), rate


def loudest_second(audio: np.ndarray) -> np.ndarray | None:
    """The `EVENT_S` window with the most energy, faded in and out, at peak `PEAK`; None for a
    silent source."""
    n = int(EVENT_S * SAMPLE_RATE)
    if len(audio) > n:
        hop = SAMPLE_RATE // 20
        power = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
        energy = (power[n:] - power[:-n])[::hop]
        start = int(np.argmax(energy)) * hop
        audio = audio[start : start + n]
    cut = fit_length(audio, n)
    peak = float(np.abs(cut).max(initial=0.0))
    if peak < 1e-3:
        return None
    fade = int(0.01 * SAMPLE_RATE)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    cut[:fade] *= ramp
    cut[-fade:] *= ramp[::-1]
    return (cut * (PEAK / peak)).astype(np.float32)


# ---- building ---------------------------------------------------------------------------------


def collect_events(trees: dict[str, Path]) -> dict[str, list[tuple[Source, np.ndarray]]]:
    """Class -> its one-second cuts, from every source file its rule matches."""
    rules = {label: (pkg, re.compile(rx)) for label, (pkg, rx) in CLASSES.items()}
    by_class: dict[str, list[tuple[Source, np.ndarray]]] = {label: [] for label in CLASSES}
    sources = list(list_sources(trees))
    for source, handle in tqdm(sources, desc="cutting sound events", unit="file"):
        matches = (
            lb
            for lb, (pkg, rx) in rules.items()
            if pkg == source.package and rx.search(source.path)
        )
        label = next(matches, None)
        if label is None:
            continue
        try:
            audio, rate = read_source(handle)
        except (RuntimeError, sf.LibsndfileError) as e:
            log.warning("skipping unreadable %s:%s (%s)", source.package, source.path, e)
            continue
        if rate != SAMPLE_RATE:
            audio = soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32)
        cut = loudest_second(audio)
        if cut is not None:
            by_class[label].append((source, cut))
    return by_class


def split_events(
    by_class: dict[str, list[tuple[Source, np.ndarray]]], rng: random.Random, min_clips: int
) -> dict[str, dict[str, list[tuple[Source, np.ndarray]]]]:
    """Per class, a quarter of the source files (at least one) held out; classes with fewer
    than `min_clips` files are left out (logged)."""
    splits: dict[str, dict[str, list[tuple[Source, np.ndarray]]]] = {"train": {}, "eval": {}}
    for label, events in by_class.items():
        if len(events) < min_clips:
            log.warning(
                "class %r: %d clip(s), fewer than %d: left out", label, len(events), min_clips
            )
            continue
        order = list(range(len(events)))
        rng.shuffle(order)
        held = max(1, round(len(events) / 4))
        splits["eval"][label] = [events[i] for i in order[:held]]
        splits["train"][label] = [events[i] for i in order[held:]]
    return splits


class ClipWriter:
    def __init__(self, out: Path, split: str) -> None:
        self.dir = out / "clips" / split
        self.dir.mkdir(parents=True, exist_ok=True)
        self.split = split
        self.count = 0

    def write(self, audio: np.ndarray, stem: str) -> str:
        self.count += 1
        name = f"{self.count:05d}-{re.sub(r'[^a-z0-9]+', '-', stem.lower()).strip('-')}.flac"
        sf.write(str(self.dir / name), audio, SAMPLE_RATE, subtype="PCM_16")
        return f"clips/{self.split}/{name}"


def build_split(
    out: Path,
    split: str,
    events: dict[str, list[tuple[Source, np.ndarray]]],
    n_combos: int,
    rng: random.Random,
) -> list[dict[str, Any]]:
    """Single-event rows for every cut, and `n_combos` class pairs each as A then B, B then A
    and A while B."""
    writer = ClipWriter(out, split)
    total = int(TOTAL_S * SAMPLE_RATE)
    gap = int(GAP_S * SAMPLE_RATE)
    rows: list[dict[str, Any]] = []

    def row(
        audio: np.ndarray, labels: tuple[str, ...], relation: str, sources: list[Source]
    ) -> None:
        path = writer.write(audio, "-".join(labels) + f"-{relation}")
        rows.append({
            "audio": path,
            "labels": list(labels),
            "relation": relation,
            "caption": caption(labels, relation, rng.randrange(4)),
            "license": "; ".join(s.license for s in sources),
            "source": [f"{s.package}:{s.path}" for s in sources],
        })  # fmt: skip

    for label, cuts in events.items():
        for source, cut in cuts:
            start = rng.randrange(0, total - len(cut) + 1)
            row(fit_length(cut, total, start), (label,), "single", [source])
    labels = sorted(events)
    for _ in range(n_combos):
        a, b = rng.sample(labels, 2)
        (sa, ca), (sb, cb) = rng.choice(events[a]), rng.choice(events[b])
        row(compose_sequence(ca, cb, gap), (a, b), "before", [sa, sb])
        row(reverse_pair(ca, cb, gap), (b, a), "before", [sb, sa])
        offset = rng.randrange(0, gap + 1)
        level = rng.uniform(-6.0, 0.0)
        mixed = fit_length(overlay(ca, cb, offset, level), total)
        peak = float(np.abs(mixed).max())
        if peak > 0.9:  # never write a clipping overlay
            mixed *= 0.9 / peak
        row(mixed, (a, b), "while", [sa, sb])
    return rows


def synth_sound_event_dataset(
    out: Path,
    *,
    seed: int = 0,
    train_combos: int = 200,
    eval_combos: int = 80,
    min_clips: int = 3,
    packages_dir: Path | None = None,
) -> dict[str, Any]:
    """Build the whole set into `out`; returns the summary written to `dataset.json`."""
    out = Path(out)
    rng = random.Random(seed)
    trees = fetch_packages(packages_dir or cache_dir() / "sources" / "debian", sorted(PACKAGES))
    splits = split_events(collect_events(trees), rng, min_clips)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    counts = {}
    for split, combos in (("train", train_combos), ("eval", eval_combos)):
        rows = build_split(tmp, split, splits[split], combos, rng)
        with (tmp / f"{split}.jsonl").open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        counts[split] = {
            rel: sum(r["relation"] == rel for r in rows) for rel in ("single", "before", "while")
        }
    classes = {
        label: {"train": len(splits["train"][label]), "eval": len(splits["eval"][label]),
                "package": CLASSES[label][0]}
        for label in sorted(splits["train"])
    }  # fmt: skip
    atomic_write_json(tmp / "classes.json", classes)
    summary = {"seed": seed, "sample_rate": SAMPLE_RATE, "event_s": EVENT_S, "gap_s": GAP_S,
               "classes": len(classes), "rows": counts}  # fmt: skip
    atomic_write_json(tmp / "dataset.json", summary)
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return summary
