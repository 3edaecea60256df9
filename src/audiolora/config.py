"""Run configuration: one validated object built from a YAML recipe plus `key=value` overrides.

`RunConfig` is the framework's sections (`audiolora.settings`) plus one section per registered
task that declares one (`temporal:`, `slu:`), and `task` may name any registered task: adding a
task adds its section here without editing this file. Every section forbids unknown keys, so a
misspelt key or a value outside the allowed set fails before any work starts, with the dotted
path of the key and what is allowed. The resolved config is saved next to the run
(`RUN/config.yaml`) so a run can be reproduced.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError, create_model, field_validator, model_validator

from audiolora.atomic import atomic_write_text
from audiolora.settings import (  # noqa: F401  (re-exported: the sections of a recipe)
    STAGE_FIXED_KEYS,
    AdaLoraConfig,
    AdapterConfig,
    DataConfig,
    ModelConfig,
    Section,
    SpecAugmentConfig,
    StageConfig,
    TrainingConfig,
)
from audiolora.tasks.registry import TASKS, get_task


class RunConfigBase(Section):
    """The sections every run has; `RunConfig` adds the task sections."""

    task: str = "stt"
    """The registered task to train (`audiolora.tasks.registry`)."""
    output_dir: str = "runs/default"
    model: ModelConfig = ModelConfig()
    adapter: AdapterConfig = AdapterConfig()
    data: DataConfig = DataConfig()
    training: TrainingConfig = TrainingConfig()
    stages: list[StageConfig] = []
    """A schedule of training stages run in order (empty: one stage, the recipe as it is)."""

    @field_validator("task")
    @classmethod
    def _registered_task(cls, value: str) -> str:
        if value not in TASKS:
            raise ValueError(f"unknown task {value!r}; choose from {sorted(TASKS)}")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> RunConfigBase:
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


RunConfig = create_model(
    "RunConfig",
    __base__=RunConfigBase,
    __doc__="A whole recipe: the framework's sections plus each registered task's own.",
    **{
        name: (task.section, task.section())
        for name, task in TASKS.items()
        if task.section is not None
    },
)


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
    try:
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        problem = str(e).splitlines()[0]
        raise ConfigError(
            f"override '{assignment}': the value is not valid YAML ({problem}); quote a string, "
            "write a list as [a, b]"
        ) from e


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
        except IsADirectoryError as e:
            raise ConfigError(f"{path}: is a folder; give a recipe YAML file") from e
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not a text file (byte {e.start + 1} is not UTF-8)") from e
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


def schedule(config: RunConfig) -> list[StageConfig]:
    """The recipe's stages, else those a task setting stands for (SLU's schemes; may be empty)."""
    if config.stages:
        return list(config.stages)
    try:
        return get_task(config.task).stages(config)
    except ValueError as e:
        raise ConfigError(str(e)) from e


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
    """Atomic: eval, predict, export and resume trust this file, and a truncated YAML often
    still parses (the missing sections would silently take their defaults)."""
    atomic_write_text(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
