"""The alignment training loop on cached tower outputs: projector + LoRA, resumable, timed.

Why not the Trainer: the Trainer's step is "collate audio, run the whole model"; here the
audio tower is not part of the step at all (its outputs are cached), and the loss is taken on
the answer positions only, so `lm_head` (49k x 576) runs on ~20 tokens a clip instead of
~110. Everything else is stock: PEFT LoRA, torch AdamW, transformers' cosine schedule, bf16
autocast where the CPU computes it natively.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from audiolora.atomic import atomic_save_torch, atomic_write_text
from audiolora.builtin.align.features import AlignExample
from audiolora.evaluation.metrics import transcription_metrics
from audiolora.models.families.base import AudioLanguageFamily, unwrapped
from audiolora.models.lalm import IGNORE_INDEX
from audiolora.precision import compute_precision

STATE_FILE = "align-state.pt"


@dataclass(frozen=True)
class LoopSettings:
    steps: int = 400
    batch_size: int = 8
    lr_lora: float = 3e-3
    lr_projector: float = 1e-2
    warmup_steps: int = 30
    seed: int = 0
    eval_every: int = 100
    save_every: int = 50
    eval_batch_size: int = 16
    max_new_tokens: int = 40
    precision: str = "auto"


@dataclass
class LoopState:
    step: int = 0
    wall_s: float = 0.0
    """Training seconds so far, summed over resumed sessions (evaluation excluded)."""
    log: list[dict[str, Any]] = field(default_factory=list)


class CachedAudioLM:
    """The assembled model's forward with tower outputs given instead of audio."""

    def __init__(self, model: nn.Module, family: AudioLanguageFamily, audio_id: int, pad_id: int):
        self.model = model
        base = unwrapped(model)
        self.base = base
        self.projector = base.get_submodule(family.projector_prefix)
        self.language_model = base.get_submodule(family.text_prefix)
        self.lm_head = base.get_output_embeddings()
        self.embed = base.get_input_embeddings()
        self.audio_id = audio_id
        self.pad_id = pad_id

    def embeddings(self, batch: list[AlignExample], ids: torch.Tensor) -> torch.Tensor:
        embeds = self.embed(ids)
        audio = self.projector(torch.cat([e.audio.float() for e in batch]))
        mask = (ids == self.audio_id).unsqueeze(-1)
        return embeds.masked_scatter(mask, audio.to(embeds.dtype))

    def pad(self, rows: list[torch.Tensor], value: int, left: bool = False) -> torch.Tensor:
        length = max(len(r) for r in rows)
        out = torch.full((len(rows), length), value, dtype=torch.long)
        for i, r in enumerate(rows):
            if left:
                out[i, length - len(r) :] = r
            else:
                out[i, : len(r)] = r
        return out

    def loss(self, batch: list[AlignExample]) -> torch.Tensor:
        """Mean cross-entropy over the answer tokens (transcript + end of turn)."""
        ids = self.pad([e.input_ids for e in batch], self.pad_id)
        labels = self.pad([e.labels() for e in batch], IGNORE_INDEX)
        attention = self.pad([torch.ones_like(e.input_ids) for e in batch], 0)
        hidden = self.language_model(
            inputs_embeds=self.embeddings(batch, ids), attention_mask=attention
        ).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE_INDEX
        logits = self.lm_head(hidden[:, :-1][keep])
        return nn.functional.cross_entropy(logits.float(), targets[keep])

    @torch.no_grad()
    def transcribe(
        self,
        examples: list[AlignExample],
        stop_ids: list[int],
        batch_size: int,
        max_new_tokens: int,
        tokenizer: Any,
    ) -> list[str]:
        """Greedy answers to the prompts of `examples` (their answers are ignored)."""
        texts: list[str] = []
        for first in range(0, len(examples), batch_size):
            batch = examples[first : first + batch_size]
            prompts = [e.input_ids[: e.answer_start] for e in batch]
            ids = self.pad(prompts, self.pad_id, left=True)
            attention = self.pad([torch.ones_like(p) for p in prompts], 0, left=True)
            out = self.base.generate(
                inputs_embeds=self.embeddings(batch, ids),
                attention_mask=attention,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stop_ids,
                pad_token_id=self.pad_id,
            )
            texts += [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]
        return texts


def batch_order(lengths: list[int], steps: int, batch_size: int, seed: int) -> list[list[int]]:
    """Indices of every step's batch: seeded shuffles, one per epoch, in which neighbouring
    clips of similar length share a batch (less padding), the batches themselves shuffled."""
    rng = random.Random(seed)
    order: list[list[int]] = []
    while len(order) < steps:
        indices = list(range(len(lengths)))
        rng.shuffle(indices)
        pool = batch_size * 16
        batches = []
        for first in range(0, len(indices), pool):
            chunk = sorted(indices[first : first + pool], key=lambda i: lengths[i])
            batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        rng.shuffle(batches)
        order += batches
    return order[:steps]


def _trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _param_groups(model: nn.Module, settings: LoopSettings, projector_prefix: str) -> list[dict]:
    projector, lora = [], []
    for name, p in _trainable(model).items():
        (projector if f"{projector_prefix}." in name else lora).append(p)
    return [
        {"params": lora, "lr": settings.lr_lora},
        {"params": projector, "lr": settings.lr_projector},
    ]


def evaluate_cached(
    lm: CachedAudioLM,
    examples: list[AlignExample],
    settings: LoopSettings,
    stop_ids: list[int],
    tokenizer: Any,
) -> dict[str, Any]:
    hyps = lm.transcribe(
        examples, stop_ids, settings.eval_batch_size, settings.max_new_tokens, tokenizer
    )
    metrics: dict[str, Any] = transcription_metrics(hyps, [e.text for e in examples])
    metrics["examples"] = [
        {"reference": e.text, "hypothesis": h} for e, h in zip(examples[:5], hyps, strict=False)
    ]
    return metrics


def train_alignment(
    lm: CachedAudioLM,
    family: AudioLanguageFamily,
    train: list[AlignExample],
    held_out: list[AlignExample],
    settings: LoopSettings,
    run_dir: Path,
    stop_ids: list[int],
    tokenizer: Any,
    progress: bool = True,
) -> LoopState:
    """Train `settings.steps` steps, resuming from `run_dir/align-state.pt` when it exists.

    Every `save_every` steps the trainable tensors, optimizer and schedule are written
    atomically; every `eval_every` steps (and at the end) the held-out clips are transcribed
    greedily from cached features and WER is logged against training wall time."""
    model = lm.model
    optimizer = torch.optim.AdamW(
        _param_groups(model, settings, family.projector_prefix), weight_decay=0.0
    )
    schedule = get_cosine_schedule_with_warmup(optimizer, settings.warmup_steps, settings.steps)
    state = LoopState()
    state_path = run_dir / STATE_FILE
    if state_path.is_file():
        saved = torch.load(state_path, weights_only=False)
        if saved["settings"] != asdict(settings):
            raise ValueError(
                f"{state_path} was written with other settings; use another --output or delete it"
            )
        with torch.no_grad():
            for name, p in _trainable(model).items():
                p.copy_(saved["trainable"][name])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        state = LoopState(saved["step"], saved["wall_s"], saved["log"])

    def save() -> None:
        atomic_save_torch(
            {
                "settings": asdict(settings),
                "trainable": {n: p.detach().clone() for n, p in _trainable(model).items()},
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "step": state.step,
                "wall_s": state.wall_s,
                "log": state.log,
            },
            state_path,
        )

    def evaluate() -> None:
        model.eval()
        with compute_precision(settings.precision):
            metrics = evaluate_cached(lm, held_out, settings, stop_ids, tokenizer)
        model.train()
        state.log.append({"step": state.step, "wall_s": round(state.wall_s, 1), **metrics})
        if progress:
            tqdm.write(f"step {state.step}: held-out WER {metrics['wer']:.1%}")

    order = batch_order(
        [len(e.input_ids) for e in train], settings.steps, settings.batch_size, settings.seed
    )
    if state.step == 0 and not state.log:
        evaluate()
    model.train()
    losses: list[float] = []
    with tqdm(
        total=settings.steps, initial=state.step, desc="align", unit="step", disable=not progress
    ) as bar:
        while state.step < settings.steps:
            started = time.perf_counter()
            batch = [train[i] for i in order[state.step]]
            with compute_precision(settings.precision):
                loss = lm.loss(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(_trainable(model).values()), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.wall_s += time.perf_counter() - started
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if state.step % 10 == 0:
                state.log.append(
                    {
                        "step": state.step,
                        "wall_s": round(state.wall_s, 1),
                        "loss": sum(losses[-10:]) / len(losses[-10:]),
                    }
                )
            if state.step % settings.eval_every == 0 or state.step == settings.steps:
                evaluate()
            if state.step % settings.save_every == 0 or state.step == settings.steps:
                save()
    return state


def write_log(run_dir: Path, state: LoopState) -> None:
    atomic_write_text(run_dir / "align-log.json", json.dumps(state.log, indent=1) + "\n")
