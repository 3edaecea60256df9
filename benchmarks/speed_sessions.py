"""Whole-recording localization: one prompt at a time, a shared prompt beginning per window,
and the same over several processes.

    python benchmarks/speed_sessions.py RUN SESSIONS.jsonl [--sessions 2] [--hop-s 15]
        [--shared-only] [--workers N] [--repeats 3]

RUN is a finished temporal run (`audiolora train temporal-qwen2-audio-smollm2`). Every side
runs `audiolora predict RUN --sessions`'s search on the same recordings (the first `--sessions`
rows of the manifest): the coarse pass asking each window's six boundary questions one prompt
at a time (audio tower and language model six times); the same pass with each window's audio
and common prompt beginning run once (`models.shared_prefix`), in one process; and that over
`--workers` forked single-thread processes (`tasks/temporal/parallel.py`, the default on a
CPU). `--repeats` times each side again, in alternating order. Prints wall times, the
real-time factor (mean wall / seconds of audio), the largest difference between neighbouring
sides' boundaries and coarse-pass answers, and each side's session-level MAE. Results go to
`benchmarks/results/speed_sessions.json` (`--out`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from audiolora.tasks.temporal.parallel import default_workers  # noqa: E402
from audiolora.tasks.temporal.sessions import locate_in_sessions  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "speed_sessions.json"


def first_sessions(manifest: Path, count: int, folder: Path) -> tuple[Path, float]:
    """A manifest of the first `count` rows (paths made absolute) and their seconds of audio."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    rows = rows[:count]
    for row in rows:
        for key in ("audio", "transcript"):
            if key in row and not Path(row[key]).is_absolute():
                row[key] = str((manifest.parent / row[key]).resolve())
    out = folder / manifest.name
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out, sum(float(r["duration"]) for r in rows)


def largest_difference(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """Largest |a - b| over every session's boundaries and coarse-pass answers."""
    boundaries, answers = 0.0, 0.0
    for sa, sb in zip(a["sessions"], b["sessions"], strict=True):
        for name, t in sa["boundaries"].items():
            boundaries = max(boundaries, abs(t - sb["boundaries"][name]))
            for (_, p), (_, q) in zip(
                sa["coarse_pass"][name], sb["coarse_pass"][name], strict=True
            ):
                answers = max(answers, abs(p - q))
    return {"boundaries_s": boundaries, "coarse_answers": answers}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--sessions", type=int, default=2, help="first N recordings")
    parser.add_argument("--hop-s", type=float, default=None, help="default: the run's")
    parser.add_argument(
        "--shared-only",
        action="store_true",
        help="leave out the one-prompt-at-a-time side (the slowest)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes of the last side (default: as `audiolora predict`, one per CPU core on "
        "Linux without a GPU; 1 leaves that side out)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="time every side this many times, alternating (this machine's speed drifts)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats: at least 1")
    # As `predict` does for a run loaded on the CPU (locate_in_sessions keeps a GPU run to one).
    workers = default_workers(torch.device("cpu")) if args.workers is None else args.workers
    sides = [] if args.shared_only else [("one prompt at a time", False, 1)]
    sides.append(("shared prefix, 1 process", True, 1))
    if workers > 1:
        sides.append((f"shared prefix, {workers} processes", True, workers))
    walls: dict[str, list[float]] = {name: [] for name, _, _ in sides}
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as folder:
        manifest, audio_s = first_sessions(args.manifest, args.sessions, Path(folder))
        for repeat in range(args.repeats):
            for name, shared, processes in sides if repeat % 2 == 0 else sides[::-1]:
                start = time.perf_counter()
                result = locate_in_sessions(
                    args.run,
                    manifest,
                    hop_s=args.hop_s,
                    share_prefix=shared,
                    progress=True,
                    workers=processes,
                )
                walls[name].append(time.perf_counter() - start)
                results.setdefault(name, result)
                print(f"{name}: {walls[name][-1]:.1f} s for {audio_s:.0f} s of audio", flush=True)
    names = [name for name, _, _ in sides]
    diffs = {
        f"{a} / {b}": largest_difference(results[a], results[b])
        for a, b in zip(names, names[1:], strict=False)
    }
    print(f"\nrun {args.run}, {args.sessions} recordings, {audio_s / 60:.1f} min of audio")
    print(f"{'':28}" + "".join(f"{name:>30}" for name in names))
    mean = {name: sum(w) / len(w) for name, w in walls.items()}
    for label, cells in (
        ("wall time, s (mean)", [f"{mean[n]:.1f}" for n in names]),
        ("wall times, s", [" ".join(f"{w:.1f}" for w in walls[n]) for n in names]),
        ("x real time (mean)", [f"{mean[n] / audio_s:.4f}" for n in names]),
        (
            "session-level MAE, s",
            [f"{results[n]['metrics'].get('mae_s', math.nan):.2f}" for n in names],
        ),
    ):
        print(f"{label:28}" + "".join(f"{c:>30}" for c in cells))
    for pair, diff in diffs.items():
        print(
            f"{pair}: speed-up {mean[pair.split(' / ')[0]] / mean[pair.split(' / ')[1]]:.2f}x; "
            f"largest difference: boundaries {diff['boundaries_s']:.3f} s, coarse-pass answers "
            f"{diff['coarse_answers']:.1e}"
        )
    payload = {
        "command": ["python", "benchmarks/speed_sessions.py", *(argv or sys.argv[1:])],
        "run": str(args.run),
        "recordings": args.sessions,
        "audio_s": audio_s,
        "sides": {
            name: {
                "workers": results[name]["workers"],
                "wall_s": walls[name],
                "mean_wall_s": mean[name],
                "real_time_factor": mean[name] / audio_s,
                "metrics": results[name]["metrics"],
                "boundaries": [s["boundaries"] for s in results[name]["sessions"]],
            }
            for name in names
        },
        "largest_difference": diffs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
