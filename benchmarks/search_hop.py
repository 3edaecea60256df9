"""The session search alone: which hop, and which final vote, on answers of known quality.

    python benchmarks/search_hop.py [MANIFEST.jsonl ...] [--random-sessions 100]
        [--hops 7.5,15,30] [--sigmas 1,3,6] [--confusions 0,0.1,0.3] [--repeats 10]
    python benchmarks/search_hop.py --replay RUN/sessions-eval.json [...]

`audiolora predict RUN --sessions` tiles a recording with windows every `temporal.hop_s`
seconds; each window says where each boundary lies in it, the coarse estimate is the time the
windows agree on best, and a window re-centred on it is asked again (`search.search_session`).
Two choices are measured here, each side by side:

- the hop: half-window hops give a boundary about two coarse votes and cost twice the windows
  of windows that touch;
- the final time: the re-centred window's answer alone (the search before issue 16), or the
  vote of every window with the re-centred one added (`revote`, the default now).

Our embedded window model is no better than its prior (see the temporal section of the
README), so it cannot tell which choice is right for a good model. This script drives the real
search code with a simulated window model of known quality: inside a window it says the true
offset plus Gaussian noise of `sigma` seconds; outside it says 0 or 1 (plus the same noise);
and with probability `confusion` any answer is replaced by a uniform draw (a confused window).
Every side sees the same answer for the same (recording, boundary, window, repeat), so
differences are the search's alone.

Recordings: the sessions of `MANIFEST.jsonl` (default: the `builtin:sessions` split, where
cached) and `--random-sessions` random layouts (2 to 15 minutes, phases of random length,
lead-in and wrap-up of 1-20 s, gaps of 0-10 s). Prints per (model quality, hop) the session-level
MAE (mean ± standard error over recordings x repeats), the share within 5 s, and windows per
recording; results to `benchmarks/results/search_hop.json`. NumPy on one core: 27 minutes for
the defaults here, beside a training on the other core.

`--replay` instead takes the answers a real run gave (`RUN/sessions-M.json`, written by
`audiolora predict RUN --sessions M.jsonl`, with the annotated times) and computes both final
votes from them, without the model.
"""

from __future__ import annotations

import argparse
import json
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from audiolora.data.sessions import BOUNDARIES, read_sessions
from audiolora.tasks.temporal.search import coarse_grid, search_session

RESULTS = Path(__file__).resolve().parent / "results" / "search_hop.json"
BUILTIN = Path.home() / ".cache" / "audiolora" / "data" / "sessions-v2"
SIDES = {"re-centred window alone": False, "every window votes": True}


def random_layout(rng: np.random.Generator) -> tuple[float, dict[str, float]]:
    """A recording's length and six boundary times: lead-in, three phases with gaps, wrap-up."""
    duration = float(rng.uniform(120, 900))
    lead, tail = rng.uniform(1, 20, size=2)
    gaps = rng.uniform(0, 10, size=2)
    shares = rng.dirichlet([2.0, 2.0, 2.0]) * (duration - lead - tail - gaps.sum())
    t, times = float(lead), []
    for phase, share in enumerate(shares):
        times += [t, t + float(share)]
        t += float(share) + (float(gaps[phase]) if phase < 2 else 0.0)
    return duration, dict(zip(BOUNDARIES, times, strict=True))


def answer(
    truth: float, start: float, length: float, sigma: float, confusion: float, key: tuple
) -> float:
    """The simulated head's offset for a boundary at `truth` in the window at `start`; the
    same `key` (recording, boundary, window, repeat, quality) always draws the same noise."""
    rng = np.random.default_rng(zlib.crc32(repr(key).encode()))
    if rng.random() < confusion:
        return float(rng.random())
    true_offset = min(max((truth - start) / length, 0.0), 1.0)
    return float(min(max(true_offset + rng.normal(0.0, sigma / length), 0.0), 1.0))


def simulated_errors(
    duration: float,
    truth: dict[str, float],
    window_s: float,
    hop_s: float,
    sigma: float,
    confusion: float,
    key: tuple,
) -> tuple[dict[str, list[float]], int]:
    """Per side, |found - true| per boundary of one recording and repeat; windows asked."""
    names = [b for b in BOUNDARIES if b in truth]
    length, starts = coarse_grid(duration, window_s, hop_s)

    def said(name: str, start: float) -> float:
        return answer(truth[name], start, length, sigma, confusion, (*key, name, round(start, 3)))

    grid = np.array([[said(name, start) for start in starts] for name in names])
    fresh_windows: set[float] = set()

    def ask(pairs: list[tuple[str, float]]) -> list[float]:
        fresh_windows.update(start for _, start in pairs)
        return [said(name, start) for name, start in pairs]

    errors = {}
    for side, revote in SIDES.items():
        found = search_session(duration, names, starts, length, grid, ask, revote=revote)
        errors[side] = [abs(found[n]["time_s"] - truth[n]) for n in names]
    return errors, len(starts) + len(fresh_windows)


def summary(per_recording: list[float], flat: list[float]) -> dict[str, float]:
    values = np.asarray(per_recording)
    return {
        "mae_s": float(values.mean()),
        "stderr_s": float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0,
        "within_5s": float(np.mean(np.asarray(flat) <= 5.0)),
    }


def simulate(args: argparse.Namespace) -> dict[str, Any]:
    manifests = args.manifests or sorted(BUILTIN.glob("*.jsonl"))
    recordings: list[tuple[str, float, dict[str, float]]] = []
    for manifest in manifests:
        found, problems = read_sessions(manifest, window_s=args.window_s, boundaries=BOUNDARIES)
        if problems:
            raise SystemExit(f"{manifest}: {len(problems)} problem(s), first: {problems[0]}")
        recordings += [(f"{manifest.stem}:{s.line}", s.duration, s.boundaries) for s in found]
    rng = np.random.default_rng(args.seed)
    recordings += [(f"random:{i}", *random_layout(rng)) for i in range(args.random_sessions)]
    print(
        f"{len(recordings)} recordings ({len(recordings) - args.random_sessions} from "
        f"manifests), {args.repeats} repeats each, {args.window_s:g} s windows; "
        "session-level MAE (s) ± standard error, share within 5 s"
    )
    names = list(SIDES)
    print(f"{'sigma':>6} {'confused':>8} {'hop':>5} {'windows':>8}   " + "   ".join(names))
    rows = []
    for sigma in (float(s) for s in args.sigmas.split(",")):
        for confusion in (float(c) for c in args.confusions.split(",")):
            for hop in (float(h) for h in args.hops.split(",")):
                per: dict[str, list[float]] = {n: [] for n in names}
                flat: dict[str, list[float]] = {n: [] for n in names}
                windows = []
                for name, duration, truth in recordings:
                    for repeat in range(args.repeats):
                        key = (args.seed, name, repeat, sigma, confusion)
                        errors, asked = simulated_errors(
                            duration, truth, args.window_s, hop, sigma, confusion, key
                        )
                        windows.append(asked)
                        for side, e in errors.items():
                            per[side].append(float(np.mean(e)))
                            flat[side] += e
                row = {
                    "sigma_s": sigma,
                    "confusion": confusion,
                    "hop_s": hop,
                    "windows_per_recording": float(np.mean(windows)),
                    **{side: summary(per[side], flat[side]) for side in names},
                }
                rows.append(row)
                cells = [
                    f"{row[s]['mae_s']:6.2f} ± {row[s]['stderr_s']:.2f} ({row[s]['within_5s']:.0%})"
                    for s in names
                ]
                print(
                    f"{sigma:>6g} {confusion:>8g} {hop:>5g} "
                    f"{row['windows_per_recording']:>8.1f}   " + "   ".join(cells)
                )
    return {
        "command": "python benchmarks/search_hop.py "
        + "".join(f"{m} " for m in args.manifests)
        + f"--random-sessions {args.random_sessions} --hops {args.hops} "
        f"--sigmas {args.sigmas} --confusions {args.confusions} "
        f"--repeats {args.repeats} --seed {args.seed}",
        "recordings": len(recordings),
        "rows": rows,
    }


def replay(path: Path) -> dict[str, Any]:
    """Both final votes from a run's recorded answers (`RUN/sessions-M.json`)."""
    result = json.loads(path.read_text())
    manifest = Path(result["manifest"])
    window_s, hop_s = float(result["window_s"]), float(result["hop_s"])
    found, _ = read_sessions(manifest, window_s=window_s, boundaries=())
    by_line = {s.line: s for s in found}
    per: dict[str, list[float]] = {n: [] for n in SIDES}
    flat: dict[str, list[float]] = {n: [] for n in SIDES}
    for recorded in result["sessions"]:
        session = by_line[recorded["line"]]
        names = [b for b in BOUNDARIES if b in recorded["coarse_pass"]]
        length, starts = coarse_grid(session.duration, window_s, hop_s)
        said = np.array([[p for _, p in recorded["coarse_pass"][n]] for n in names])
        refined = {n: p for n, (_, p) in recorded["refined"].items()}

        def ask(pairs: list[tuple[str, float]], refined: dict = refined) -> list[float]:
            return [refined[name] for name, _ in pairs]

        for side, revote in SIDES.items():
            times = search_session(
                session.duration, names, starts, length, said, ask, revote=revote
            )
            e = [abs(times[n]["time_s"] - session.boundaries[n]) for n in names]
            per[side].append(float(np.mean(e)))
            flat[side] += e
    rows = {side: summary(per[side], flat[side]) for side in SIDES}
    print(f"{path}: {len(result['sessions'])} recordings, hop {hop_s:g} s")
    for side, row in rows.items():
        print(
            f"  {side}: session-level MAE {row['mae_s']:.2f} s, {row['within_5s']:.0%} within 5 s"
        )
    return {"command": f"python benchmarks/search_hop.py --replay {path}", "replay": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifests", nargs="*", type=Path)
    parser.add_argument("--replay", type=Path, action="append", default=[])
    parser.add_argument("--random-sessions", type=int, default=100)
    parser.add_argument("--window-s", type=float, default=30.0)
    parser.add_argument("--hops", default="7.5,15,30")
    parser.add_argument("--sigmas", default="1,3,6", help="inside-window noise (s)")
    parser.add_argument("--confusions", default="0,0.1,0.3")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = {"replays": [replay(p) for p in args.replay]} if args.replay else simulate(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
