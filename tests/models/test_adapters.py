from pathlib import Path

import pytest
import torch

from audiolora.config import AdapterConfig, ModelConfig
from audiolora.models.adapters import attach_adapters, count_parameters, scale_adapter
from audiolora.models.families import WHISPER
from audiolora.models.loading import ModelLoadError, load_model, resolve_model_path


def lora_module_names(model: torch.nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if hasattr(module, "lora_A")]


@pytest.fixture()
def base(tiny_random_whisper_dir: Path):
    model, _, family, _ = load_model(ModelConfig(name=str(tiny_random_whisper_dir)))
    return model, family


def test_default_targets_cover_encoder_and_decoder(base) -> None:
    model, family = base
    names = lora_module_names(attach_adapters(model, AdapterConfig(), family, 10))
    assert any(".encoder.layers." in n for n in names)
    assert any(".decoder.layers.1.encoder_attn.q_proj" in n for n in names)
    assert any(n.endswith("fc2") for n in names)


def test_frozen_audio_encoder_gets_no_adapters(base) -> None:
    model, family = base
    cfg = AdapterConfig(train_audio_encoder=False)
    names = lora_module_names(attach_adapters(model, cfg, family, 10))
    assert names and not any(".encoder." in n for n in names)


def test_encoder_only_leaves_the_decoder_as_it_was(base) -> None:
    model, family = base
    cfg = AdapterConfig(train_text_model=False)
    names = lora_module_names(attach_adapters(model, cfg, family, 10))
    assert names and all(".encoder.layers." in n for n in names)


def test_encoder_only_needs_an_encoder_that_takes_lora(base) -> None:
    model, family = base
    cfg = AdapterConfig(train_text_model=False, train_audio_encoder=False)
    with pytest.raises(ValueError, match="train_text_model"):
        attach_adapters(model, cfg, family, 10)


def test_selected_layers_only(base) -> None:
    model, family = base
    cfg = AdapterConfig(layers=[1], target_modules=["q_proj", "v_proj"])
    names = lora_module_names(attach_adapters(model, cfg, family, 10))
    assert names
    assert all(".layers.1." in n for n in names)
    assert all(n.endswith(("q_proj", "v_proj")) for n in names)


def test_rank_pattern_changes_one_module(base) -> None:
    model, family = base
    cfg = AdapterConfig(r=4, rank_pattern={r"model\.decoder\.layers\.0\.self_attn\.q_proj": 2})
    peft_model = attach_adapters(model, cfg, family, 10)
    modules = dict(peft_model.named_modules())
    q0 = next(m for n, m in modules.items() if n.endswith("decoder.layers.0.self_attn.q_proj"))
    q1 = next(m for n, m in modules.items() if n.endswith("decoder.layers.1.self_attn.q_proj"))
    assert q0.r["default"] == 2 and q1.r["default"] == 4


def test_a_pattern_that_matches_no_module_is_refused(base) -> None:
    model, family = base
    cfg = AdapterConfig(r=4, rank_pattern={r"model\.decoder\.layers\.9\.self_attn\.q_proj": 2})
    with pytest.raises(ValueError, match="rank_pattern key .* matches none of the 32"):
        attach_adapters(model, cfg, family, 10)


def test_only_adapters_train(base) -> None:
    model, family = base
    peft_model = attach_adapters(model, AdapterConfig(r=2), family, 10)
    trainable, total = count_parameters(peft_model)
    assert 0 < trainable < total * 0.1
    assert all("lora_" in n for n, p in peft_model.named_parameters() if p.requires_grad)


def test_unmatched_targets_explain_themselves(base) -> None:
    model, family = base
    with pytest.raises(ValueError, match="matched no module"):
        attach_adapters(
            model, AdapterConfig(target_modules=["no_such_proj"], layers=[0]), family, 10
        )


def test_regex_is_plain_list_when_unrestricted() -> None:
    assert WHISPER.adapter_targets(AdapterConfig(target_modules=["q_proj"])) == ["q_proj"]


def test_missing_local_folder_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model_path(str(tmp_path / "nope" / "model"))


def test_hub_id_is_refused_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE"):
        resolve_model_path("openai/whisper-small")


def test_kimi_audio_is_named_as_not_in_transformers(tmp_path: Path) -> None:
    folder = tmp_path / "Kimi-Audio-7B-Instruct"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "kimi_audio"}')
    with pytest.raises(ModelLoadError, match="Kimi-Audio is not in transformers"):
        load_model(ModelConfig(name=str(folder)))


def test_final_scale_interpolates_the_update_towards_the_base(base) -> None:
    model, family = base
    peft_model = attach_adapters(model, AdapterConfig(r=2), family, 10).eval()  # no dropout
    layer = next(m for m in peft_model.modules() if hasattr(m, "lora_B"))
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
    x = torch.randn(3, layer.in_features)
    base_out = layer.base_layer(x)
    full = layer(x) - base_out
    assert scale_adapter(peft_model, 0.7) > 0
    assert torch.allclose(layer(x) - base_out, 0.7 * full, atol=1e-5)


def test_final_scale_refuses_fully_trained_modules() -> None:
    with pytest.raises(ValueError, match="final_scale"):
        AdapterConfig(final_scale=0.5, train_projector=True)
