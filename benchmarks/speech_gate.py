"""What gating a trained encoder adapter by speech activity does to WER and speed.

    python benchmarks/speech_gate.py runs/m-whisper-enc-s43-w07

Scores one finished speech-to-text run (LoRA in Whisper's encoder) on its held-out split and on
`builtin:speech-retention`, twice: as trained (plain LoRA everywhere), and with the LoRA update
of every encoder module scaled frame by frame by Silero VAD's speech probability
(`adapter.speech_gate`), applied at evaluation only -- the adapter was not trained gated, so
this measures what the gate changes in an existing adapter, not a gated training. Prints WER
and the seconds each evaluation took (the VAD pass included) side by side.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from audiolora.evaluation.retention import held_out_and_retention, scoring_dataset
from audiolora.inference import load_run_with_family
from audiolora.models.speech_gate import install_speech_gate
from audiolora.tasks.registry import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished stt run with encoder LoRA")
    args = parser.parse_args()

    model, processor, config, family = load_run_with_family(args.run)
    task = get_task("stt")
    sets = held_out_and_retention(config)
    results: dict[str, dict[str, float]] = {}
    for gated in (False, True):
        if gated:
            install_speech_gate(model, family.audio_encoder_prefix)
        arm = "gated by speech" if gated else "plain LoRA"
        arm_config = config.model_copy(deep=True)
        arm_config.adapter.speech_gate = gated
        for name, manifest in sets.items():
            data = scoring_dataset(task, arm_config, manifest, processor, family)
            start = time.perf_counter()
            metrics = task.evaluate(model, processor, data, family=family, desc=f"{arm} {name}")
            results.setdefault(arm, {})[name] = metrics["wer"]
            results[arm][f"{name} s"] = time.perf_counter() - start
    print(f"{'arm':<18} {'held-out WER':>13} {'retention WER':>14} {'held-out s':>11} "
          f"{'retention s':>12}")  # fmt: skip
    for arm, r in results.items():
        print(f"{arm:<18} {r['held-out']:>13.1%} {r['retention']:>14.1%} "
              f"{r['held-out s']:>11.1f} {r['retention s']:>12.1f}")  # fmt: skip
    out = Path(__file__).parent / "results" / "speech_gate.json"
    out.write_text(json.dumps({"run": str(args.run), **results}, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
