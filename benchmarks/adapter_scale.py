"""Held-out and out-of-domain WER of a finished speech-to-text run with its LoRA update scaled
by each factor (WiSE-FT): both sides of the in-domain / out-of-domain trade in one table.

    python benchmarks/adapter_scale.py runs/m-whisper-enc --scales 1.0,0.7,0.5

The run's own held-out manifest and `builtin:speech-retention` are scored through the STT task,
decoded as the run decodes. A run saved with `adapter.final_scale` < 1 is scaled again on top.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from audiolora.evaluation.retention import held_out_and_retention, scoring_dataset
from audiolora.inference import load_run_with_family
from audiolora.models.adapters import scale_adapter
from audiolora.tasks.registry import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished stt run folder")
    parser.add_argument("--scales", default="1.0,0.7,0.5")
    args = parser.parse_args()

    model, processor, config, family = load_run_with_family(args.run)
    task = get_task("stt")
    sets = held_out_and_retention(config)
    datasets = {
        name: scoring_dataset(task, config, manifest, processor, family)
        for name, manifest in sets.items()
    }
    original = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    t = config.training
    print("| scale | held-out WER | retention WER |\n|---|---|---|")
    for scale in (float(s) for s in args.scales.split(",")):
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name in original:
                    param.copy_(original[name])
        scale_adapter(model, scale)
        wer = {
            name: task.evaluate(model, processor, data, batch_size=t.eval_batch_size,
                                num_beams=t.num_beams, max_new_tokens=t.max_new_tokens,
                                desc=name, progress=False, family=family)["wer"]
            for name, data in datasets.items()
        }  # fmt: skip
        print(f"| {scale:g} | {wer['held-out']:.1%} | {wer['retention']:.1%} |", flush=True)


if __name__ == "__main__":
    main()
