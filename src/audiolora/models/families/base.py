"""What a model family is: its layout and the behaviour that differs between architectures.

Why objects rather than a table of strings: tasks ask a family to do things -- build a dataset of
transcription examples, collate, generate, return the hidden states of the language model, put
audio into a prompt -- and each architecture does them its own way. A task asks; it never tests
which family it holds, and never imports a concrete one. A new family is one module under
`audiolora.models.families` plus its tests, and one line in the registry there.

Two shapes exist. An encoder-decoder (Whisper) feeds its text decoder through cross-attention
and transcribes with `generate(input_features=...)`. An audio language model
(`AudioLanguageFamily`: Qwen2-Audio, Qwen2.5-Omni) puts the audio tower's outputs into a causal
LM's input sequence, one embedding per audio placeholder token of a chat prompt; every task on
it is "audio + instruction -> answer text" (see `audiolora.models.lalm`).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import transformers
from torch import nn
from transformers import PreTrainedModel, ProcessorMixin

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from audiolora.settings import AdapterConfig, DataConfig


class Family:
    """Layout facts plus the transcription behaviour every family provides."""

    name: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]
    """`config.model_type` values this family loads (`family: auto` picks by them)."""
    model_class: ClassVar[str]
    """Name of the transformers class that loads the full model."""
    audio_encoder_prefix: ClassVar[str]
    """Module-name prefix of the audio encoder (`model.encoder` for Whisper)."""
    text_prefix: ClassVar[str]
    """Module-name prefix of the text decoder / language model; its layers are
    `{text_prefix}.layers.N`."""
    default_targets: ClassVar[tuple[str, ...]]
    quant_skip_modules: ClassVar[tuple[str, ...]]
    """Full-name prefixes kept in full precision under 4-bit loading (transformers 5 matches
    `llm_int8_skip_modules` from the start of the module name)."""
    adapts_audio_encoder: ClassVar[bool] = True
    contrastive: ClassVar[bool] = False
    """True for models that embed audio and text (CLAP); only the contrastive task takes them."""
    """Whether `adapter.train_audio_encoder` may put LoRA into the audio encoder."""
    loss_is_batch_mean: ClassVar[bool] = True
    """The model's own loss averages over its batch's labelled tokens and ignores the step's
    token count the Trainer hands it (Whisper, Qwen2-Audio); False where the model divides by
    that count itself (the Omni thinkers)."""
    audio_input_name: ClassVar[str] = "input_features"
    max_audio_seconds: ClassVar[float | None] = 30.0
    """Longest audio one encoder pass takes; longer audio is split into segments (None: the
    encoder takes any length)."""

    def __repr__(self) -> str:
        return f"<family {self.name}>"

    # ---- loading -----------------------------------------------------------------------------

    def load_processor(self, path: str) -> ProcessorMixin:
        raise NotImplementedError

    def model_cls(self) -> type[PreTrainedModel]:
        return getattr(transformers, self.model_class)

    def configure(self, model: PreTrainedModel, language: str | None) -> None:
        """Settings applied after loading (Whisper's generation language)."""

    # ---- layout ------------------------------------------------------------------------------

    def text_layer_count(self, model: nn.Module) -> int:
        """Layers in the text stack (`{text_prefix}.layers.N`, also under a PEFT wrapper)."""
        pattern = re.compile(rf"(.*\.)?{re.escape(self.text_prefix)}\.layers\.(\d+)")
        found = [
            int(m.group(2)) for name, _ in model.named_modules() if (m := pattern.fullmatch(name))
        ]
        return max(found) + 1 if found else 0

    def adapter_targets(self, cfg: AdapterConfig) -> str | list[str]:
        """Module names (or one full-match regex) that get LoRA.

        Without layer or encoder restrictions the plain name list is returned (PEFT matches the
        last name component). Otherwise a regex such as
        `(model\\.decoder)\\.layers\\.(1|3)\\.(.*\\.)?(q_proj|v_proj)`. A family whose audio
        encoder shares layer names with the LM (`adapts_audio_encoder = False`) always anchors
        the regex at the language model.
        """
        targets = list(cfg.target_modules or self.default_targets)
        with_encoder = cfg.train_audio_encoder and self.adapts_audio_encoder
        if not cfg.train_text_model and not with_encoder:
            raise ValueError(
                "adapter.train_text_model=false needs LoRA in the audio encoder, which "
                f"{self.name} does not take (or adapter.train_audio_encoder is false)"
            )
        if cfg.layers is None and with_encoder and cfg.train_text_model:
            return targets
        stacks = ([self.text_prefix] if cfg.train_text_model else []) + (
            [self.audio_encoder_prefix] if with_encoder else []
        )
        stack_re = "|".join(re.escape(s) for s in stacks)
        layer_re = r"\d+" if cfg.layers is None else "|".join(str(i) for i in cfg.layers)
        names_re = "|".join(re.escape(n) for n in targets)
        return rf"({stack_re})\.layers\.({layer_re})\.(.*\.)?({names_re})"

    def peft_targets(self, cfg: AdapterConfig) -> dict[str, Any]:
        """The `LoraConfig` fields that say where LoRA goes (`target_modules`, and whatever else
        a family needs to say it)."""
        return {"target_modules": self.adapter_targets(cfg)}

    def fully_trained_modules(self, cfg: AdapterConfig) -> list[str]:
        """Modules trained in full next to LoRA (PEFT `modules_to_save`), from the recipe."""
        return []

    def split_audio(self, audio: np.ndarray, sr: int) -> list[np.ndarray]:
        """Audio cut into pieces one encoder pass takes (one piece without a limit)."""
        from audiolora.models.lalm import split_audio

        if self.max_audio_seconds is None:
            return [np.asarray(audio)]
        return split_audio(audio, sr, self.max_audio_seconds)

    # ---- transcription (the stt task, `predict` on files) -----------------------------------

    def transcription_dataset(
        self,
        rows: list[Any],
        processor: ProcessorMixin,
        data: DataConfig,
        instruction: str,
        speech_gate: bool = False,
    ) -> Dataset:
        """Manifest rows -> training / scoring examples with the transcript as the target
        (with each clip's per-frame speech probability when `speech_gate`)."""
        raise NotImplementedError

    def transcription_collator(self, processor: ProcessorMixin) -> Any:
        raise NotImplementedError

    def transcribe(
        self,
        model: nn.Module,
        processor: ProcessorMixin,
        dataset: Dataset,
        *,
        batch_size: int,
        num_beams: int,
        max_new_tokens: int,
        desc: str,
        progress: bool,
    ) -> tuple[list[str], float, int]:
        """Decode every example; returns texts, summed reference NLL and reference tokens."""
        raise NotImplementedError

    def timed_transcribe(
        self, model: nn.Module, processor: ProcessorMixin, dataset: Dataset, **options: Any
    ) -> tuple[list[str], float, int, float]:
        """`transcribe` in eval mode (the mode restored after), plus the seconds it took."""
        was_training = model.training
        model.eval()
        start = time.perf_counter()
        hyps, nll, tokens = self.transcribe(model, processor, dataset, **options)
        elapsed = time.perf_counter() - start
        if was_training:
            model.train()
        return hyps, nll, tokens, elapsed

    def answer_files(
        self,
        model: nn.Module,
        processor: ProcessorMixin,
        audio_paths: list[Path],
        *,
        sampling_rate: int,
        instruction: str,
        batch_size: int,
        num_beams: int,
        max_new_tokens: int,
        trim_context: tuple[float, float] | None = None,
    ) -> list[str]:
        """One answer per whole audio file, however long (`audiolora predict`).
        `trim_context`: `data.trim_context()` for encoders with a fixed window."""
        raise NotImplementedError


class AudioLanguageFamily(Family):
    """An audio tower + projector feeding a causal LM through placeholder tokens of a chat
    prompt. Subclasses say how audio becomes features and placeholders."""

    adapts_audio_encoder: ClassVar[bool] = False
    projector_prefix: ClassVar[str]
    """Module-name prefix of the audio-to-text projector."""
    trims_padded_frames: ClassVar[bool] = False
    """The model cuts 30 s feature segments to the batch's longest real segment before its
    tower (exact for a tower that masks padded frames; see `encoder_context`); a switch for
    benchmarks and tests."""
    continues_from_cache: ClassVar[bool] = False
    """A forward given a key/value cache continues the prompt's positions from its length, so
    prompts sharing a beginning can run it once (`shared_prefix`); not so for 3-D positions."""

    def fully_trained_modules(self, cfg: AdapterConfig) -> list[str]:
        """The projector (when the tower and LM come from different checkpoints, an untrained
        projector is the only part that does not speak the LM's language yet) and/or the
        whole audio tower (new audio domains)."""
        names = [self.projector_prefix] if cfg.train_projector else []
        if cfg.train_audio_encoder_fully:
            names.append(self.audio_encoder_prefix)
        return names

    def cache_tower(self, model: nn.Module, budget_mb: float) -> Any:
        """Reuse the frozen tower's outputs per segment in training forwards (a `TowerCache`),
        where the family can; None where it cannot."""
        return None

    def audio_token_id(self, processor: ProcessorMixin) -> int:
        return int(processor.audio_token_id)

    def encode_audio_prompt(
        self, processor: ProcessorMixin, prompt: str, audios: list[np.ndarray], sr: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input_ids (1, L), features (segments, mel, frames), real-frame mask (segments,
        frames)) of a rendered prompt holding one audio placeholder per segment; each placeholder
        is expanded to the encoder's output count for its segment."""
        raise NotImplementedError

    def expand_audio_placeholders(
        self, processor: ProcessorMixin, prompt: str, feature_mask: torch.Tensor
    ) -> torch.Tensor:
        """input_ids (1, L) of a rendered prompt, each audio placeholder repeated to the
        encoder's output count for its segment's real frames (`feature_mask`, segments x
        frames): how a prompt over audio featurized already is encoded."""
        counts = self.audio_token_counts(feature_mask.sum(-1)).tolist()
        pieces = prompt.split(processor.audio_token)
        if len(pieces) != len(counts) + 1:
            raise ValueError(
                f"the prompt holds {len(pieces) - 1} {processor.audio_token} placeholders for "
                f"{len(counts)} audio segments"
            )
        text = pieces[0] + "".join(
            processor.audio_token * int(n) + piece
            for n, piece in zip(counts, pieces[1:], strict=True)
        )
        return processor.tokenizer([text], return_tensors="pt", add_special_tokens=False).input_ids

    def empty_features(self, processor: ProcessorMixin) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and mask of a text-only example (no segments)."""
        fe = processor.feature_extractor
        frames = self.max_frames(processor)
        return (
            torch.zeros((0, fe.feature_size, frames), dtype=torch.float32),
            torch.zeros((0, frames), dtype=torch.long),
        )

    def max_frames(self, processor: ProcessorMixin) -> int:
        """Frame width of a segment's features (all segments of an encoder that pads share it)."""
        return int(processor.feature_extractor.nb_max_frames)

    def audio_token_counts(self, frames: torch.Tensor) -> torch.Tensor:
        """Placeholder tokens the encoder fills for segments of `frames` real mel frames.

        Qwen2-Audio's and Qwen2.5-Omni's Whisper-style towers halve the frames twice (a
        stride-2 conv, then pooling), as their `_get_feat_extract_output_lengths` computes; a
        tower that reduces otherwise overrides this."""
        after_conv = (frames - 1) // 2 + 1
        return (after_conv - 2) // 2 + 1

    def multimodal_model(self, model: nn.Module) -> nn.Module:
        """The module that merges audio into the LM and returns hidden states without the
        vocabulary projection (PEFT's LoRA layers live inside it, in place)."""
        return unwrapped(model).model

    def audio_dtype(self, model: nn.Module) -> torch.dtype:
        """The dtype audio features must have to enter the audio tower."""
        tower = unwrapped(model).get_submodule(self.audio_encoder_prefix)
        return next(tower.parameters()).dtype

    def hidden_states(
        self,
        model: nn.Module,
        batch: dict[str, torch.Tensor],
        output_hidden_states: bool = False,
    ) -> Any:
        """The multimodal forward without `lm_head`: an output with `last_hidden_state` (and
        `hidden_states`, embeddings first, when asked)."""
        inputs = dict(batch)
        if inputs.get("input_features") is not None:
            inputs["input_features"] = inputs["input_features"].to(self.audio_dtype(model))
        return self.multimodal_model(model)(**inputs, output_hidden_states=output_hidden_states)

    # ---- transcription ------------------------------------------------------------------------

    def transcription_dataset(
        self,
        rows: list[Any],
        processor: ProcessorMixin,
        data: DataConfig,
        instruction: str,
        speech_gate: bool = False,
    ) -> Dataset:
        from audiolora.models.lalm import SpeechPromptDataset

        if speech_gate:
            raise ValueError(
                f"adapter.speech_gate gates LoRA in an audio encoder; {self.name} keeps its "
                "encoder free of LoRA (Whisper models take it)"
            )

        return SpeechPromptDataset(self, rows, processor, data.sampling_rate, instruction)

    def transcription_collator(self, processor: ProcessorMixin) -> Any:
        from audiolora.models.lalm import LalmCollator

        return LalmCollator(self, processor, padding_side="right")

    def transcribe(
        self,
        model: nn.Module,
        processor: ProcessorMixin,
        dataset: Dataset,
        **options: Any,
    ) -> tuple[list[str], float, int]:
        from audiolora.models.lalm import answer_prompts

        return answer_prompts(self, model, processor, dataset, **options)  # type: ignore[arg-type]

    def answer_files(
        self,
        model: nn.Module,
        processor: ProcessorMixin,
        audio_paths: list[Path],
        *,
        sampling_rate: int,
        instruction: str,
        batch_size: int,
        num_beams: int,
        max_new_tokens: int,
        trim_context: tuple[float, float] | None = None,
    ) -> list[str]:
        """A long file becomes several audio segments in one prompt (the tower masks its
        padding, so `trim_context` changes nothing here)."""
        from torch.utils.data import DataLoader

        from audiolora.models.lalm import LalmCollator, SpeechPromptDataset, generate_text

        dataset = SpeechPromptDataset.for_files(
            self, audio_paths, processor, sampling_rate, instruction
        )
        collator = LalmCollator(self, processor, padding_side="left")
        texts: list[str] = []
        for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collator):
            texts += generate_text(model, processor, batch, max_new_tokens, num_beams)
        return texts


def unwrapped(model: nn.Module) -> nn.Module:
    """The transformers model under a PEFT wrapper (the model itself when unwrapped)."""
    from peft import PeftModel

    return model.get_base_model() if isinstance(model, PeftModel) else model
