"""Held-out WER against training wall time for several `audiolora models align` runs, and for
runs of the stock Trainer recipe (`audiolora train align-qwen2-audio-smollm2`, whose evaluations
record the training time before them), in one plot (the README's figure):

    python benchmarks/align_curves.py runs/align-c runs/align-b runs/align-stock \
        --output docs/align-wer.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from audiolora.builtin.align import plot_curve


def trainer_log(run: Path) -> tuple[str, list[dict]]:
    """A Trainer run's held-out WER points as an alignment log (step, wall_s, wer), the base
    model at 0 s."""
    metrics = json.loads((run / "metrics.json").read_text())
    log = [{"step": 0, "wall_s": 0.0, "wer": metrics["base"]["wer"]}]
    log += [
        {"step": h["step"], "wall_s": h["train_s"], "wer": h["eval_wer"]}
        for h in metrics["history"]
        if "eval_wer" in h and "train_s" in h
    ]
    steps = max(e["step"] for e in log)
    batch = yaml.safe_load((run / "config.yaml").read_text())["training"]["batch_size"]
    return f"{run.name}: stock Trainer recipe, {steps} steps, batch {batch}", log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="align run folders")
    parser.add_argument("--output", type=Path, default=Path("align-wer.png"))
    args = parser.parse_args()
    logs = {}
    for run in args.runs:
        if (run / "align.json").exists():
            summary = json.loads((run / "align.json").read_text())
            loop = summary["recipe"]["loop"]
            log = json.loads((run / "align-log.json").read_text())
            logs[f"{run.name}: {loop['steps']} steps, batch {loop['batch_size']}"] = log
        else:
            label, log = trainer_log(run)
            logs[label] = log
        for e in log:
            if "wer" in e:
                minutes = e["wall_s"] / 60
                print(f"{run.name}\tstep {e['step']}\t{minutes:5.1f} min\tWER {e['wer']:.1%}")
    plot_curve(logs, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
