"""Whole-recording localization: one prompt at a time vs a shared prompt beginning per window.

    python benchmarks/speed_sessions.py RUN SESSIONS.jsonl [--sessions 2] [--hop-s 15]

RUN is a finished temporal run (`audiolora train temporal-qwen2-audio-smollm2`). Both sides
run `audiolora predict RUN --sessions` on the same recordings (the first `--sessions` rows of
the manifest): the coarse pass asking each window's six boundary questions one prompt at a
time (audio tower and language model six times), and the same pass with each window's audio
and common prompt beginning run once (`models.shared_prefix`). Prints wall time, real-time
factor (wall / seconds of audio), the largest difference between the two sides' boundaries and
coarse-pass answers, and both session-level MAEs. Results go to
`benchmarks/results/speed_sessions.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from audiolora.tasks.temporal.sessions import locate_in_sessions  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "speed_sessions.json"
SIDES = {"one prompt at a time": False, "shared prefix": True}


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
        help="time the shared-prefix side alone (e.g. a second run, against an earlier table)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes sharing a recording's windows (default: as `audiolora predict`, one "
        "per CPU core on Linux without a GPU)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        manifest, audio_s = first_sessions(args.manifest, args.sessions, Path(folder))
        sides = {}
        for side, shared in SIDES.items():
            if args.shared_only and not shared:
                continue
            start = time.perf_counter()
            result = locate_in_sessions(
                args.run,
                manifest,
                hop_s=args.hop_s,
                share_prefix=shared,
                progress=True,
                workers=args.workers,
            )
            wall = time.perf_counter() - start
            sides[side] = {"wall_s": wall, "real_time_factor": wall / audio_s, "result": result}
            print(f"{side}: {wall:.1f} s for {audio_s:.0f} s of audio", flush=True)
    fast = sides["shared prefix"]
    slow = sides.get("one prompt at a time")
    diff = largest_difference(slow["result"], fast["result"]) if slow else None
    print(
        f"\nrun {args.run}, {args.sessions} recordings, {audio_s / 60:.1f} min of audio, "
        f"{fast['result']['workers']} process(es) a recording"
    )
    print(f"{'':34}" + "".join(f"{side:>24}" for side in sides))
    for label, cells in (
        ("wall time, s", [f"{r['wall_s']:.1f}" for r in sides.values()]),
        ("x real time", [f"{r['real_time_factor']:.3f}" for r in sides.values()]),
        (
            "session-level MAE, s",
            [f"{r['result']['metrics'].get('mae_s', float('nan')):.2f}" for r in sides.values()],
        ),
    ):
        print(f"{label:34}" + "".join(f"{c:>24}" for c in cells))
    if slow and diff:
        print(
            f"speed-up {slow['wall_s'] / fast['wall_s']:.2f}x; largest difference: boundaries "
            f"{diff['boundaries_s']:.3f} s, coarse-pass answers {diff['coarse_answers']:.1e}"
        )
    payload = {
        "command": ["python", "benchmarks/speed_sessions.py", *(argv or sys.argv[1:])],
        "run": str(args.run),
        "recordings": args.sessions,
        "audio_s": audio_s,
        "workers": fast["result"]["workers"],
        "sides": {
            side: {
                "wall_s": r["wall_s"],
                "real_time_factor": r["real_time_factor"],
                "metrics": r["result"]["metrics"],
                "boundaries": [s["boundaries"] for s in r["result"]["sessions"]],
            }
            for side, r in sides.items()
        },
        "largest_difference": diff,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
