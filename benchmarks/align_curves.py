"""Held-out WER against training wall time for several `audiolora models align` runs, in one
plot (the README's figure):

    python benchmarks/align_curves.py runs/align-c runs/align-b --output docs/align-wer.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from audiolora.builtin.align import plot_curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="align run folders")
    parser.add_argument("--output", type=Path, default=Path("align-wer.png"))
    args = parser.parse_args()
    logs = {}
    for run in args.runs:
        summary = json.loads((run / "align.json").read_text())
        steps = summary["recipe"]["loop"]["steps"]
        log = json.loads((run / "align-log.json").read_text())
        logs[f"{run.name}: {steps} steps, batch 8"] = log
        for e in log:
            if "wer" in e:
                minutes = e["wall_s"] / 60
                print(f"{run.name}\tstep {e['step']}\t{minutes:5.1f} min\tWER {e['wer']:.1%}")
    plot_curve(logs, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
