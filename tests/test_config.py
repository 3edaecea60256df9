from pathlib import Path

import pytest

from audiolora.cli import builtin_recipes
from audiolora.config import ConfigError, RunConfig, load_config


def test_defaults_are_a_valid_run() -> None:
    config = RunConfig()
    assert config.model.quantization == "none"
    assert config.data.train == "builtin:speech"


@pytest.mark.parametrize("name", sorted(builtin_recipes()))
def test_every_builtin_recipe_validates(name: str) -> None:
    config = load_config(builtin_recipes()[name])
    prefix = name.split("-")[0]
    tasks = ("temporal", "slu", "paralinguistic", "contrastive")
    assert config.task == (prefix if prefix in tasks else "stt")


def test_overrides_are_parsed_as_yaml(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("training:\n  epochs: 3\n")
    config = load_config(
        recipe, ["training.epochs=1.5", "adapter.layers=[0, 2]", "model.quantization=nf4"]
    )
    assert config.training.epochs == 1.5
    assert config.adapter.layers == [0, 2]
    assert config.model.quantization == "nf4"


def test_misspelt_key_names_its_path_and_a_suggestion(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("training:\n  learning_rte: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(recipe)
    message = str(err.value)
    assert "training.learning_rte" in message
    assert "Did you mean 'learning_rate'" in message
    assert str(recipe) in message


def test_wrong_value_names_the_allowed_values() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, ["model.quantization=int3"])
    message = str(err.value)
    assert "model.quantization" in message and "'nf4'" in message and "int3" in message


def test_every_error_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, ["adapter.r=0", "training.batch_size=-1"])
    assert "adapter.r" in str(err.value) and "training.batch_size" in str(err.value)


def test_override_without_equals_sign_is_rejected() -> None:
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(None, ["training.epochs"])


def test_override_whose_value_is_not_yaml_names_the_override() -> None:
    with pytest.raises(ConfigError, match=r"override 'training.epochs=\[1': .*not valid YAML"):
        load_config(None, ["training.epochs=[1"])


def test_a_recipe_that_is_a_folder_or_binary_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)
    binary = tmp_path / "weights.bin"
    binary.write_bytes(b"\x00\xff\xfe" * 10)
    with pytest.raises(ConfigError, match="not a text file"):
        load_config(binary)


def test_inconsistent_combination_is_rejected() -> None:
    with pytest.raises(ConfigError, match="fp16"):
        load_config(None, ["model.quantization=nf4", "training.precision=fp16"])


def test_save_total_limit_keeps_a_complete_checkpoint() -> None:
    with pytest.raises(ConfigError, match="save_total_limit"):
        load_config(None, ["training.save_total_limit=1"])


def test_slu_schemes_expand_to_the_seeds_schedules() -> None:
    from audiolora.config import schedule, stage_configs

    def plan(scheme: str, *extra: str) -> list:
        config = load_config(
            None,
            ["task=slu", f"slu.scheme={scheme}", "slu.speech_fraction=0.05", *extra],
        )
        return [
            (n, c.slu.speech_fraction, c.training.epochs, c.training.learning_rate)
            for n, c in stage_configs(config)
        ], schedule(config)

    stages, spec = plan("text_only", "training.epochs=3")
    assert stages == [("text", 0.0, 3.0, 1e-3)] and spec[0].trainable == ["lora_"]
    stages, _ = plan("mixing", "training.epochs=3")
    assert stages == [("mixed", 0.05, 3.0, 1e-3)]
    stages, _ = plan("curriculum", "training.epochs=3", "training.learning_rate=5e-6")
    assert stages[0] == ("text", 0.0, 2.0, 5e-6)
    assert stages[1][:3] == ("speech", 0.05, 1.0) and stages[1][3] == pytest.approx(3e-6)
    with pytest.raises(ConfigError, match="epochs >= 2"):
        plan("curriculum", "training.epochs=1")
    custom, spec = plan("custom")
    assert [n for n, *_ in custom] == ["main"] and spec == []


def test_the_readme_sample_recipe_is_the_shipped_default(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("```yaml\ntask: stt", 1)[1].split("```", 1)[0]
    sample = tmp_path / "sample.yaml"
    sample.write_text("task: stt" + block, encoding="utf-8")
    assert load_config(sample) == load_config(builtin_recipes()["whisper-tiny-en-lora"])


def test_quantize_lm_head_needs_a_quantized_model() -> None:
    with pytest.raises(ConfigError, match="quantize_lm_head"):
        load_config(None, ["model.quantize_lm_head=true"])
    config = load_config(None, ["model.quantization=nf4", "model.quantize_lm_head=true"])
    assert config.model.quantize_lm_head is True


def test_quantize_embeddings_needs_a_quantized_model() -> None:
    with pytest.raises(ConfigError, match="quantize_embeddings"):
        load_config(None, ["model.quantize_embeddings=true"])
    config = load_config(None, ["model.quantization=int8", "model.quantize_embeddings=true"])
    assert config.model.quantize_embeddings is True
