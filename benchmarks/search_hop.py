"""The session search alone: which hop, and which final vote, on answers of known quality.

    python benchmarks/search_hop.py [MANIFEST.jsonl ...] [--random-sessions 100]
        [--hops 7.5,15,30] [--sigmas 1,3,6] [--confusions 0,0.1,0.3] [--repeats 10]
        [--edge-noise 0]
    python benchmarks/search_hop.py --replay RUN/sessions-eval.json [...]

`audiolora predict RUN --sessions` tiles a recording with windows every `temporal.hop_s`
seconds; each window says where each boundary lies in it, the coarse estimate is the time the
windows agree on best, and a window re-centred on it is asked again (`search.search_session`).
Three choices are measured here, side by side:

- the hop: half-window hops give a boundary about two coarse votes and cost twice the windows
  of windows that touch;
- the final time: the re-centred window's answer alone (the search before issue 16), or the
  vote of every window with the re-centred one added (`revote`, the default now);
- `fill_in` (`temporal.fill_in`, off by default): between the coarse vote and the re-centring,
  the window half a hop over that holds each estimate votes too.

Our embedded window model is no better than its prior (see the temporal section of the
README), so it cannot tell which choice is right for a good model. This script drives the real
search code with a simulated window model of known quality: inside a window it says the true
offset plus Gaussian noise of `sigma` seconds; outside it says 0 or 1 (plus the same noise);
and with probability `confusion` any answer is replaced by a uniform draw (a confused window).
`--edge-noise E` makes the noise grow from sigma at a window's centre to (1 + E) sigma at its
edges, as for a head that sees a boundary best with context on both sides (the premise of
re-centring). Every side sees the same answer for the same (recording, boundary, window,
repeat), so differences are the search's alone, and they are given paired, by recording.

Recordings: the sessions of `MANIFEST.jsonl` (default: the `builtin:sessions` split, where
cached) and `--random-sessions` random layouts (2 to 15 minutes, phases of random length,
lead-in and wrap-up of 1-20 s, gaps of 0-10 s). Prints per (model quality, hop) the session-level
MAE (mean ± standard error over recordings x repeats), the share within 5 s, and windows per
recording; results to `benchmarks/results/search_hop.json`. NumPy on one core: about 9
minutes for the defaults.

`--replay` instead takes the answers a real run gave (`RUN/sessions-M.json`, written by
`audiolora predict RUN --sessions M.jsonl`, with the annotated times) and computes both final
votes from them, without the model (the "every window votes" side is then what predict said).
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
REPLAYS = RESULTS.with_name("search_hop_replay.json")
BUILTIN = Path.home() / ".cache" / "audiolora" / "data" / "sessions-v2"
SIDES: dict[str, dict[str, bool]] = {
    "re-centred window alone": {"revote": False},
    "every window votes": {},
    "filled in, every window votes": {"fill_in": True},
}
ALONE, VOTE, FILLED = SIDES


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
    truth: float,
    start: float,
    length: float,
    sigma: float,
    confusion: float,
    edge_noise: float,
    key: tuple,
) -> float:
    """The simulated head's offset for a boundary at `truth` in the window at `start`; the
    same `key` (recording, boundary, window, repeat, quality) always draws the same noise.
    `edge_noise`: the noise grows from `sigma` at the window's centre to (1 + edge_noise) x
    `sigma` at its edges (a head that sees a boundary best with context on both sides)."""
    rng = np.random.default_rng(zlib.crc32(repr(key).encode()))
    if rng.random() < confusion:
        return float(rng.random())
    true_offset = min(max((truth - start) / length, 0.0), 1.0)
    scale = sigma * (1.0 + edge_noise * 2.0 * abs(true_offset - 0.5)) / length
    return float(min(max(true_offset + rng.normal(0.0, scale), 0.0), 1.0))


def simulated_errors(
    duration: float,
    truth: dict[str, float],
    hop_s: float,
    args: argparse.Namespace,
    sigma: float,
    confusion: float,
    key: tuple,
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Per side, |found - true| per boundary of one recording and repeat, and windows asked."""
    names = [b for b in BOUNDARIES if b in truth]
    length, starts = coarse_grid(duration, args.window_s, hop_s)

    def said(name: str, start: float) -> float:
        window = (*key, name, round(start, 3))
        return answer(truth[name], start, length, sigma, confusion, args.edge_noise, window)

    grid = np.array([[said(name, start) for start in starts] for name in names])
    errors, windows = {}, {}
    for side, options in SIDES.items():
        fresh_windows: set[float] = set()

        def ask(pairs: list[tuple[str, float]], asked: set[float] = fresh_windows) -> list[float]:
            asked.update(round(start, 6) for _, start in pairs)
            return [said(name, start) for name, start in pairs]

        found = search_session(duration, names, starts, length, grid, ask, **options)
        errors[side] = [abs(found[n]["time_s"] - truth[n]) for n in names]
        windows[side] = len(starts) + len(fresh_windows)
    return errors, windows


def mean_and_stderr(per_recording: np.ndarray) -> tuple[float, float]:
    """Mean over recordings of their mean over repeats, and its standard error across
    recordings (repeats of one layout are not independent draws)."""
    means = per_recording.mean(axis=1)
    stderr = float(means.std(ddof=1) / math.sqrt(len(means))) if len(means) > 1 else 0.0
    return float(means.mean()), stderr


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
        f"manifests), {args.repeats} repeats each, {args.window_s:g} s windows, edge noise "
        f"{args.edge_noise:g}; session-level MAE (s) ± standard error across recordings, "
        "share within 5 s, windows asked; then paired differences"
    )
    names = list(SIDES)
    print(f"{'sigma':>6} {'confused':>8} {'hop':>5}   " + "   ".join(names))
    rows = []
    hops = [float(h) for h in args.hops.split(",")]
    for sigma in (float(s) for s in args.sigmas.split(",")):
        for confusion in (float(c) for c in args.confusions.split(",")):
            kept: dict[float, dict[str, np.ndarray]] = {}
            for hop in hops:
                shape = (len(recordings), args.repeats)
                per = {n: np.zeros(shape) for n in names}
                flat: dict[str, list[float]] = {n: [] for n in names}
                windows: dict[str, list[int]] = {n: [] for n in names}
                for i, (name, duration, truth) in enumerate(recordings):
                    for repeat in range(args.repeats):
                        key = (args.seed, name, repeat, sigma, confusion)
                        errors, asked = simulated_errors(
                            duration, truth, hop, args, sigma, confusion, key
                        )
                        for side, e in errors.items():
                            per[side][i, repeat] = float(np.mean(e))
                            flat[side] += e
                            windows[side].append(asked[side])
                kept[hop] = per
                row: dict[str, Any] = {"sigma_s": sigma, "confusion": confusion, "hop_s": hop}
                for side in names:
                    mae, stderr = mean_and_stderr(per[side])
                    row[side] = {
                        "mae_s": mae,
                        "stderr_s": stderr,
                        "within_5s": float(np.mean(np.asarray(flat[side]) <= 5.0)),
                        "windows_per_recording": float(np.mean(windows[side])),
                    }
                paired = {"vote - alone": (VOTE, ALONE), "filled - vote": (FILLED, VOTE)}
                row["paired_s"] = {}
                for label, (a, b) in paired.items():
                    mean, stderr = mean_and_stderr(per[a] - per[b])
                    row["paired_s"][label] = {"mean": mean, "stderr": stderr}
                rows.append(row)
                cells = [
                    f"{row[s]['mae_s']:6.2f} ± {row[s]['stderr_s']:.2f} "
                    f"({row[s]['within_5s']:.0%}, {row[s]['windows_per_recording']:.1f} windows)"
                    for s in names
                ]
                differences = [
                    f"{label} {d['mean']:+.2f} ± {d['stderr']:.2f}"
                    for label, d in row["paired_s"].items()
                ]
                print(
                    f"{sigma:>6g} {confusion:>8g} {hop:>5g}   "
                    + "   ".join(cells)
                    + "   "
                    + ", ".join(differences)
                )
            if {15.0, 30.0} <= kept.keys():
                # The faster settings against the search before issue 16, paired by recording.
                for side in (VOTE, FILLED):
                    mean, stderr = mean_and_stderr(kept[30.0][side] - kept[15.0][ALONE])
                    hop30 = next(r for r in rows[-len(hops) :] if r["hop_s"] == 30.0)
                    hop30.setdefault("hop30_minus_hop15_alone_s", {})[side] = {
                        "mean": mean,
                        "stderr": stderr,
                    }
                    print(f"{'':>22}hop 30 {side} - hop 15 alone: {mean:+.2f} ± {stderr:.2f} s")
    return {
        "command": "python benchmarks/search_hop.py "
        + "".join(f"{m} " for m in args.manifests)
        + f"--random-sessions {args.random_sessions} --hops {args.hops} "
        f"--sigmas {args.sigmas} --confusions {args.confusions} "
        f"--edge-noise {args.edge_noise:g} --repeats {args.repeats} --seed {args.seed}",
        "recordings": len(recordings),
        "rows": rows,
    }


def replay(path: Path) -> dict[str, Any]:
    """Both final votes from a run's recorded answers (`RUN/sessions-M.json`)."""
    result = json.loads(path.read_text())
    if result.get("fill_in"):
        raise SystemExit(f"{path}: searched with fill-in; replay a search without it")
    manifest = Path(result["manifest"])
    window_s, hop_s = float(result["window_s"]), float(result["hop_s"])
    found, problems = read_sessions(manifest, window_s=window_s, boundaries=())
    if problems:
        raise SystemExit(f"{manifest}: {len(problems)} problem(s), first: {problems[0]}")
    by_line = {s.line: s for s in found}
    sides = {side: SIDES[side] for side in (ALONE, VOTE)}  # the ones that ask no new window
    flat: dict[str, list[float]] = {n: [] for n in sides}
    for recorded in result["sessions"]:
        session = by_line[recorded["line"]]
        names = [b for b in BOUNDARIES if b in recorded["coarse_pass"]]
        length, starts = coarse_grid(session.duration, window_s, hop_s)
        said = np.array([[p for _, p in recorded["coarse_pass"][n]] for n in names])

        def ask(pairs: list[tuple[str, float]], refined: dict = recorded["refined"]) -> list[float]:
            for name, start in pairs:  # the search re-centres where the run did
                assert abs(refined[name][0] - start) < 1e-6, (name, start, refined[name])
            return [refined[name][1] for name, _ in pairs]

        for side, options in sides.items():
            times = search_session(
                session.duration,
                names,
                starts,
                length,
                said,
                ask,
                min_phase_s=result.get("min_phase_s", 0.0),
                any_order=result.get("any_phase_order", False),
                **options,
            )
            e = [
                abs(times[n]["time_s"] - session.boundaries[n])
                for n in names
                if n in session.boundaries and times[n]["time_s"] is not None
            ]
            flat[side] += e
    print(f"{path}: {len(result['sessions'])} recordings, hop {hop_s:g} s")
    rows = {}
    for side in sides:
        mae = float(np.mean(flat[side])) if flat[side] else math.nan
        within = float(np.mean(np.asarray(flat[side]) <= 5.0)) if flat[side] else math.nan
        rows[side] = {"mae_s": mae, "within_5s": within, "boundaries": len(flat[side])}
        print(f"  {side}: session-level MAE {mae:.2f} s, {within:.0%} within 5 s")
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
    parser.add_argument(
        "--edge-noise",
        type=float,
        default=0.0,
        help="noise at a window's edges is (1 + this) x sigma; 0: the same everywhere",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="default: results/search_hop[_replay].json")
    args = parser.parse_args()
    results = {"replays": [replay(p) for p in args.replay]} if args.replay else simulate(args)
    args.out = args.out or (REPLAYS if args.replay else RESULTS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
