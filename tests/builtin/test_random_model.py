"""A random-weight audio LM of a chosen size loads through audiolora like any checkpoint."""

from __future__ import annotations

from pathlib import Path

from audiolora.builtin.random_model import save_random_qwen2_audio
from audiolora.models.loading import load_model
from audiolora.settings import ModelConfig


def test_a_random_model_of_the_asked_size_loads_as_a_qwen2_audio(tmp_path: Path) -> None:
    text = {
        "hidden_size": 96,
        "intermediate_size": 192,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    }
    folder = save_random_qwen2_audio(tmp_path / "m", text=text, dtype="bfloat16", seed=3)
    model, processor, family, _ = load_model(ModelConfig(name=str(folder)))
    assert family.name == "qwen2_audio"
    lm = model.config.text_config
    assert (lm.hidden_size, lm.num_hidden_layers) == (96, 3)
    layers = {
        n.split(".layers.")[1].split(".")[0]
        for n, _ in model.named_parameters()
        if ".layers." in n and "audio" not in n
    }
    assert layers == {"0", "1", "2"}
    # the byte-level tokenizer round-trips text, and the audio token is one token
    ids = processor.tokenizer("tone do").input_ids
    assert processor.tokenizer.decode(ids) == "tone do"
    audio = processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    assert model.config.audio_token_index == audio
    # the same seed gives the same weights
    again = save_random_qwen2_audio(tmp_path / "again", text=text, dtype="bfloat16", seed=3)
    assert (folder / "model.safetensors").read_bytes() == (again / "model.safetensors").read_bytes()
