"""Qwen2-Audio-class models end to end on a tiny random one: prompts with audio segments,
placeholder counts, labels, LoRA placement, projector training, NF4 loading and a CPU step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from audiolora.builtin.assemble import AUDIO_BOS_TOKEN, AUDIO_EOS_TOKEN, AUDIO_TOKEN
from audiolora.config import AdapterConfig, ModelConfig
from audiolora.models.adapters import attach_adapters
from audiolora.models.families import QWEN2_AUDIO
from audiolora.models.lalm import (
    IGNORE_INDEX,
    LalmCollator,
    encode_example,
    encode_example_over,
    end_of_turn_id,
    generate_text,
    placeholder_guard,
    split_audio,
)
from audiolora.models.loading import ModelLoadError, load_model

SR = 16000
INSTRUCTION = "Transcribe."
ANSWER = "hello world"


@pytest.fixture()
def loaded(tiny_qwen2_audio_dir: Path):
    model, processor, family, _ = load_model(ModelConfig(name=str(tiny_qwen2_audio_dir)))
    return model, processor, family


def tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.1 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def lora_names(model: torch.nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if hasattr(m, "lora_A")]


def eos_id(processor) -> int:
    return processor.tokenizer.convert_tokens_to_ids(AUDIO_EOS_TOKEN)


def placeholder_count(input_ids: torch.Tensor, processor) -> int:
    return int((input_ids == processor.audio_token_id).sum())


def test_split_keeps_every_sample() -> None:
    audio = tone(45.0)
    segments = split_audio(audio, SR)
    assert [len(s) / SR for s in segments] == [30.0, 15.0]
    assert np.array_equal(np.concatenate(segments), audio)
    assert len(split_audio(tone(30.0), SR)) == 1
    # A 0.2 s tail would give the encoder ~10 frames: the last two segments share instead.
    assert [len(s) / SR for s in split_audio(tone(30.2), SR)] == [15.1, 15.1]


def test_one_segment_prompt_matches_the_encoder(loaded) -> None:
    model, processor, family = loaded
    assert family is QWEN2_AUDIO
    ex = encode_example(QWEN2_AUDIO, processor, [tone(10.0)], INSTRUCTION, ANSWER)
    assert ex["input_features"].shape == (1, 80, 3000)  # padded to the 30 s the encoder demands
    assert ex["feature_attention_mask"].sum().item() == 1000  # 10 s of real 10 ms frames
    encoder = model.model.audio_tower
    _, out_len = encoder._get_feat_extract_output_lengths(ex["feature_attention_mask"].sum(-1))
    assert placeholder_count(ex["input_ids"], processor) == out_len.item() == 250
    placeholder_guard(
        QWEN2_AUDIO, ex["input_ids"][None], ex["feature_attention_mask"], processor.audio_token_id
    )
    text = processor.tokenizer.decode(ex["input_ids"])
    assert f"Audio 1: {AUDIO_BOS_TOKEN}{AUDIO_TOKEN}" in text and "Audio 2" not in text


def test_two_segments_each_get_their_own_placeholders(loaded) -> None:
    model, processor, _ = loaded
    segments = split_audio(tone(45.0), SR)
    ex = encode_example(QWEN2_AUDIO, processor, segments, INSTRUCTION, None)
    assert "labels" not in ex
    assert ex["input_features"].shape == (2, 80, 3000)
    assert ex["feature_attention_mask"].sum(-1).tolist() == [3000, 1500]
    ids = ex["input_ids"]
    bos = processor.tokenizer.convert_tokens_to_ids(AUDIO_BOS_TOKEN)
    eos = processor.tokenizer.convert_tokens_to_ids(AUDIO_EOS_TOKEN)
    starts = (ids == bos).nonzero().flatten().tolist()
    ends = (ids == eos).nonzero().flatten().tolist()
    assert [e - s - 1 for s, e in zip(starts, ends, strict=True)] == [750, 375]
    text = processor.tokenizer.decode(ids)
    assert text.index("Audio 1: ") < text.index("Audio 2: ") < text.index(INSTRUCTION)
    assert text.endswith("<|im_start|>assistant\n")
    placeholder_guard(
        QWEN2_AUDIO, ids[None], ex["feature_attention_mask"], processor.audio_token_id
    )


def test_guard_names_both_counts_on_a_tampered_prompt(loaded) -> None:
    model, processor, _ = loaded
    ex = encode_example(QWEN2_AUDIO, processor, split_audio(tone(45.0), SR), INSTRUCTION, None)
    ids = ex["input_ids"]
    first_audio = int((ids == processor.audio_token_id).nonzero()[0])
    tampered = torch.cat([ids[:first_audio], ids[first_audio + 1 :]])  # one placeholder lost
    with pytest.raises(ValueError, match="segment 0: 749 placeholder tokens .* produces 750"):
        placeholder_guard(
            QWEN2_AUDIO, tampered[None], ex["feature_attention_mask"], processor.audio_token_id
        )
    first_audio_end = int((ids == eos_id(processor)).nonzero()[0])
    first_segment_only = ids[: first_audio_end + 1]  # the second segment's run is cut off
    with pytest.raises(ValueError, match="1 runs .* but 2 audio segments"):
        placeholder_guard(
            QWEN2_AUDIO,
            first_segment_only[None],
            ex["feature_attention_mask"],
            processor.audio_token_id,
        )


@pytest.mark.parametrize("segments", [0, 1, 2])
def test_encoding_over_an_encoded_example_gives_what_encoding_the_audio_anew_gives(
    loaded, segments: int
) -> None:
    """Another question over the same audio reuses its features: the same tensors."""
    _, processor, _ = loaded
    audios = [tone(30.0), tone(4.5, 300.0)][:segments]
    first = encode_example(QWEN2_AUDIO, processor, audios, INSTRUCTION, None)
    for instruction, answer in (("Where does it start?", None), ("And end?", ANSWER)):
        anew = encode_example(QWEN2_AUDIO, processor, audios, instruction, answer)
        over = encode_example_over(QWEN2_AUDIO, processor, first, instruction, answer)
        assert over.keys() == anew.keys()
        for key in anew:
            assert torch.equal(over[key], anew[key]), key


def test_labels_cover_only_the_answer(loaded) -> None:
    _, processor, _ = loaded
    ex = encode_example(QWEN2_AUDIO, processor, [tone(3.0)], INSTRUCTION, ANSWER)
    labels = ex["labels"]
    assert labels.shape == ex["input_ids"].shape
    answer_positions = (labels != IGNORE_INDEX).nonzero().flatten()
    n_target = len(processor.tokenizer(ANSWER).input_ids) + 1  # + end of turn
    assert answer_positions.tolist() == list(range(len(labels) - n_target, len(labels)))
    assert torch.equal(labels[answer_positions], ex["input_ids"][answer_positions])
    assert processor.tokenizer.decode(labels[answer_positions]) == ANSWER + "<|im_end|>"
    assert labels[-1].item() == end_of_turn_id(processor)


def test_forward_with_labels_gives_a_finite_loss(loaded) -> None:
    model, processor, _ = loaded
    collate = LalmCollator(QWEN2_AUDIO, processor, processor.tokenizer.pad_token_id)
    batch = collate(
        [
            encode_example(
                QWEN2_AUDIO, processor, split_audio(tone(45.0), SR), INSTRUCTION, ANSWER
            ),
            encode_example(QWEN2_AUDIO, processor, [tone(2.0, 220.0)], INSTRUCTION, "hi"),
        ]
    )
    loss = model(**batch).loss
    assert torch.isfinite(loss) and loss.item() > 0


def test_collator_pads_right_for_training_and_left_for_generation(loaded) -> None:
    model, processor, _ = loaded
    pad = processor.tokenizer.pad_token_id
    long = encode_example(QWEN2_AUDIO, processor, split_audio(tone(45.0), SR), INSTRUCTION, ANSWER)
    short = encode_example(QWEN2_AUDIO, processor, [tone(2.0)], INSTRUCTION, "hi")
    n_long, n_short = long["input_ids"].numel(), short["input_ids"].numel()

    right = LalmCollator(QWEN2_AUDIO, processor, pad)([short, long])
    assert right["input_ids"].shape == (2, n_long)
    assert right["input_features"].shape == (3, 80, 3000)  # short's 1 segment, then long's 2
    assert right["feature_attention_mask"].sum(-1).tolist() == [200, 3000, 1500]
    assert right["attention_mask"][0].tolist() == [1] * n_short + [0] * (n_long - n_short)
    assert (right["labels"][0, n_short:] == IGNORE_INDEX).all()
    assert (right["input_ids"][0, n_short:] == pad).all()

    prompts = [
        encode_example(QWEN2_AUDIO, processor, [tone(2.0)], INSTRUCTION, None),
        encode_example(QWEN2_AUDIO, processor, split_audio(tone(45.0), SR), INSTRUCTION, None),
    ]
    left = LalmCollator(QWEN2_AUDIO, processor, pad, padding_side="left")(prompts)
    gap = left["input_ids"].shape[1] - prompts[0]["input_ids"].numel()
    assert left["attention_mask"][0].tolist() == [0] * gap + [1] * (
        left["input_ids"].shape[1] - gap
    )
    assert "labels" not in left
    texts = generate_text(model.eval(), processor, left, max_new_tokens=4)
    one_by_one = [
        generate_text(model, processor, LalmCollator(QWEN2_AUDIO, processor, pad, "left")([p]), 4)[
            0
        ]
        for p in prompts
    ]
    assert texts == one_by_one  # left padding does not change what a prompt generates
    with pytest.raises(ValueError, match="left-padded"):
        generate_text(model, processor, right, max_new_tokens=1)


def test_text_only_example_has_no_audio_and_no_segments(loaded) -> None:
    _, processor, _ = loaded
    ex = encode_example(QWEN2_AUDIO, processor, [], "Extract.\nUtterance: wake me up", ANSWER)
    assert ex["input_features"].shape == (0, 80, 3000)
    assert ex["feature_attention_mask"].shape == (0, 3000)
    assert placeholder_count(ex["input_ids"], processor) == 0
    text = processor.tokenizer.decode(ex["input_ids"])
    assert "Audio 1" not in text and AUDIO_TOKEN not in text and "Utterance: wake me up" in text
    answer = ex["labels"][ex["labels"] != IGNORE_INDEX]
    assert processor.tokenizer.decode(answer[:-1]) == ANSWER


def test_text_only_batch_runs_as_a_plain_lm_and_generates(loaded) -> None:
    model, processor, _ = loaded
    pad = processor.tokenizer.pad_token_id
    items = [
        encode_example(QWEN2_AUDIO, processor, [], "Say hi.", "hi"),
        encode_example(QWEN2_AUDIO, processor, [], "Say something longer.", "something"),
    ]
    batch = LalmCollator(QWEN2_AUDIO, processor, pad)(items)
    assert "input_features" not in batch and "feature_attention_mask" not in batch
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    prompts = [encode_example(QWEN2_AUDIO, processor, [], "Say hi.", None)]
    left = LalmCollator(QWEN2_AUDIO, processor, pad, padding_side="left")(prompts)
    assert "input_features" not in left
    assert len(generate_text(model.eval(), processor, left, max_new_tokens=3)) == 1


def test_mixed_batch_keeps_only_the_segments_that_exist(loaded) -> None:
    model, processor, _ = loaded
    pad = processor.tokenizer.pad_token_id
    text_row = encode_example(QWEN2_AUDIO, processor, [], "Say hi.", "hi")
    speech = encode_example(
        QWEN2_AUDIO, processor, split_audio(tone(45.0), SR), INSTRUCTION, ANSWER
    )
    batch = LalmCollator(QWEN2_AUDIO, processor, pad)([text_row, speech, text_row])
    assert batch["input_features"].shape == (2, 80, 3000)
    assert batch["feature_attention_mask"].sum(-1).tolist() == [3000, 1500]
    assert torch.isfinite(model(**batch).loss)
    # The speech example scores the same alone and next to text-only rows (right padding).
    model.eval()
    alone = LalmCollator(QWEN2_AUDIO, processor, pad)([speech])
    with torch.no_grad():
        mixed_logits = model(**batch).logits[1, : speech["input_ids"].numel()]
        alone_logits = model(**alone).logits[0]
    torch.testing.assert_close(mixed_logits, alone_logits, rtol=1e-4, atol=1e-4)


def test_lora_lands_in_the_language_model_only(loaded) -> None:
    model, _, family = loaded
    # train_audio_encoder is True by default (for Whisper); it does not reach an LALM's tower.
    cfg = AdapterConfig(target_modules=list(family.default_targets))
    names = lora_names(attach_adapters(model, cfg, family, 10))
    assert names and all(".model.language_model.layers." in n for n in names)
    assert {n.rsplit(".", 1)[1] for n in names} == set(family.default_targets)


def test_selected_llm_layers_only(loaded) -> None:
    model, _, family = loaded
    cfg = AdapterConfig(layers=[1], target_modules=["q_proj", "v_proj"])
    assert (
        family.adapter_targets(cfg)
        == r"(model\.language_model)\.layers\.(1)\.(.*\.)?(q_proj|v_proj)"
    )
    names = lora_names(attach_adapters(model, cfg, family, 10))
    assert sorted(n.split("model.language_model.")[1] for n in names) == [
        "layers.1.self_attn.q_proj",
        "layers.1.self_attn.v_proj",
    ]


def move_trainable_weights(peft_model, processor) -> tuple[dict, torch.Tensor]:
    """Stand-in for training: shift every trainable weight; the batch and its loss after."""
    with torch.no_grad():
        for p in peft_model.parameters():
            if p.requires_grad:
                p.add_(0.05)
    batch = LalmCollator(QWEN2_AUDIO, processor, processor.tokenizer.pad_token_id)(
        [encode_example(QWEN2_AUDIO, processor, [tone(2.0)], INSTRUCTION, ANSWER)]
    )
    with torch.no_grad():
        return batch, peft_model.eval()(**batch).loss


def test_projector_trains_and_is_saved_with_the_adapter(
    loaded, tiny_qwen2_audio_dir: Path, tmp_path: Path
) -> None:
    from peft import PeftModel

    model, processor, family = loaded
    cfg = AdapterConfig(target_modules=["q_proj"], train_projector=True)
    assert family.fully_trained_modules(cfg) == ["model.multi_modal_projector"]
    peft_model = attach_adapters(model, cfg, family, 10)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("multi_modal_projector" in n for n in trainable)
    assert not any("audio_tower" in n for n in trainable)

    batch, trained_loss = move_trainable_weights(peft_model, processor)
    peft_model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "adapter_model.safetensors"), "pt") as f:
        assert any("multi_modal_projector" in k for k in f.keys())  # noqa: SIM118

    fresh, *_ = load_model(ModelConfig(name=str(tiny_qwen2_audio_dir)))
    reloaded = PeftModel.from_pretrained(fresh, tmp_path)
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).loss, trained_loss)  # projector came back too


def test_merge_adapter_starts_a_recipe_from_a_finished_run(
    loaded, tiny_qwen2_audio_dir: Path, tmp_path: Path
) -> None:
    model, processor, family = loaded
    cfg = AdapterConfig(target_modules=["q_proj"], train_projector=True)
    peft_model = attach_adapters(model, cfg, family, 10)
    batch, aligned_loss = move_trainable_weights(peft_model, processor)  # the "alignment run"
    run = tmp_path / "align-run"
    peft_model.save_pretrained(run / "adapter")

    merged, *_ = load_model(ModelConfig(name=str(tiny_qwen2_audio_dir), merge_adapter=str(run)))
    assert not lora_names(merged)  # folded into the weights, not stacked as adapters
    with torch.no_grad():
        assert torch.allclose(merged.eval()(**batch).loss, aligned_loss, atol=1e-5)
        base_loss = load_model(ModelConfig(name=str(tiny_qwen2_audio_dir)))[0].eval()(**batch).loss
    assert not torch.allclose(base_loss, aligned_loss, atol=1e-3)

    with pytest.raises(ModelLoadError, match="no adapter in"):
        load_model(ModelConfig(name=str(tiny_qwen2_audio_dir), merge_adapter=str(tmp_path)))
    with pytest.raises(ValueError, match="quantization=none"):
        ModelConfig(name=str(tiny_qwen2_audio_dir), merge_adapter=str(run), quantization="nf4")


def test_whole_audio_tower_can_train(loaded) -> None:
    model, processor, family = loaded
    cfg = AdapterConfig(target_modules=["q_proj"], train_audio_encoder_fully=True)
    peft_model = attach_adapters(model, cfg, family, 10)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("audio_tower" in n and "layers.1.fc2" in n for n in trainable)
    batch = LalmCollator(QWEN2_AUDIO, processor, processor.tokenizer.pad_token_id)(
        [encode_example(QWEN2_AUDIO, processor, [tone(1.0)], INSTRUCTION, ANSWER)]
    )
    peft_model(**batch).loss.backward()  # the wrapped tower still answers the model's calls
    tower_grads = [
        p.grad for n, p in peft_model.named_parameters() if "audio_tower" in n and p.requires_grad
    ]
    assert tower_grads and all(g is not None for g in tower_grads)


def test_nf4_keeps_audio_side_full_precision_and_trains_on_cpu(tiny_qwen2_audio_dir: Path) -> None:
    from bitsandbytes.nn import Linear4bit

    model, processor, family, _ = load_model(
        ModelConfig(name=str(tiny_qwen2_audio_dir), quantization="nf4")
    )
    assert isinstance(model.model.language_model.layers[0].self_attn.q_proj, Linear4bit)
    assert isinstance(model.model.language_model.layers[1].mlp.down_proj, Linear4bit)
    for kept in (
        model.model.audio_tower.layers[0].self_attn.q_proj,
        model.model.multi_modal_projector.linear,
        model.lm_head,
    ):
        assert type(kept) is torch.nn.Linear and kept.weight.dtype == torch.float32

    peft_model = attach_adapters(
        model,
        AdapterConfig(r=4, target_modules=["q_proj", "v_proj"], train_projector=True),
        family,
        1,
    )
    batch = LalmCollator(QWEN2_AUDIO, processor, processor.tokenizer.pad_token_id)(
        [encode_example(QWEN2_AUDIO, processor, [tone(2.0)], INSTRUCTION, ANSWER)]
    )
    peft_model.eval()
    with torch.no_grad():  # an eval pass first: the AVX512 repacking trap would strike after it
        peft_model(**batch)
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    loss = peft_model(**batch).loss
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert all(not torch.equal(b, p) for b, p in zip(before, params, strict=True))


def test_quantize_lm_head_puts_the_output_layer_in_nf4_and_still_trains(
    tiny_qwen2_audio_dir: Path,
) -> None:
    from bitsandbytes.nn import Linear4bit

    from audiolora.models.answer_loss import labelled_positions_loss

    model, processor, family, _ = load_model(
        ModelConfig(name=str(tiny_qwen2_audio_dir), quantization="nf4", quantize_lm_head=True)
    )
    assert isinstance(model.lm_head, Linear4bit)
    assert type(model.model.multi_modal_projector.linear) is torch.nn.Linear  # the rest as before
    peft_model = attach_adapters(
        model, AdapterConfig(r=4, target_modules=["q_proj", "v_proj"]), family, 1
    )
    batch = LalmCollator(QWEN2_AUDIO, processor, processor.tokenizer.pad_token_id)(
        [encode_example(QWEN2_AUDIO, processor, [tone(2.0)], INSTRUCTION, ANSWER)]
    )
    loss = labelled_positions_loss(peft_model, batch)  # training's loss: lm_head on the answer
    assert loss is not None and torch.isfinite(loss)
    loss.backward()
    # lora_B starts at zero, so the gradient reaches lora_B (lora_A's is zero on the first step)
    grads = [p.grad for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and bool(g.abs().sum() > 0) for g in grads)


def test_quantize_lm_head_is_refused_where_there_is_no_separate_lm_head(
    tiny_random_whisper_dir: Path,
) -> None:
    with pytest.raises(ModelLoadError, match="quantize_lm_head applies to audio LMs"):
        load_model(
            ModelConfig(
                name=str(tiny_random_whisper_dir), quantization="nf4", quantize_lm_head=True
            )
        )


def test_quantize_lm_head_is_refused_where_the_lm_head_is_tied_to_the_embeddings(
    tiny_qwen2_audio_dir: Path,
) -> None:
    from transformers import AutoConfig

    from audiolora.models.loading import kept_in_full_precision

    cfg = ModelConfig(name=str(tiny_qwen2_audio_dir), quantization="nf4", quantize_lm_head=True)
    hf_config = AutoConfig.from_pretrained(tiny_qwen2_audio_dir)
    assert "lm_head" not in kept_in_full_precision(cfg, QWEN2_AUDIO, hf_config)
    hf_config.get_text_config().tie_word_embeddings = True
    with pytest.raises(ModelLoadError, match="shares its weights with the input embeddings"):
        kept_in_full_precision(cfg, QWEN2_AUDIO, hf_config)


@pytest.mark.parametrize("quantization", ["nf4", "int8"])
def test_quantize_embeddings_holds_the_table_in_low_bits_and_still_trains(
    tiny_qwen2_audio_dir: Path, quantization: str
) -> None:
    import bitsandbytes as bnb

    from audiolora.models.answer_loss import labelled_positions_loss

    model, processor, family, _ = load_model(
        ModelConfig(
            name=str(tiny_qwen2_audio_dir), quantization=quantization, quantize_embeddings=True
        )
    )
    table = model.get_input_embeddings()
    full, *_ = load_model(ModelConfig(name=str(tiny_qwen2_audio_dir)))
    ids = torch.arange(len(processor.tokenizer))[None]
    rows, original = table(ids)[0], full.get_input_embeddings()(ids)[0]
    if quantization == "nf4":
        assert isinstance(table, bnb.nn.Embedding4bit)
        assert table.weight.quant_state.nested is False  # see quantize_input_embeddings
        # Looking rows up gives exactly the rows of the whole dequantized table (with double
        # quantization bitsandbytes 0.50 gets them wrong, and this fails).
        whole = bnb.functional.dequantize_4bit(table.weight.data, table.weight.quant_state)
        assert torch.equal(rows, whole)
    else:
        assert isinstance(table, bnb.nn.Embedding8bit)
        assert table.weight.dtype == torch.int8
    # The loaded table, rounded: NF4 is off by ~10 % of a value on average, int8 by < 1 %.
    error = (rows - original).abs().mean() / original.abs().mean()
    assert error < {"nf4": 0.15, "int8": 0.02}[quantization]
    assert rows.dtype == original.dtype
    peft_model = attach_adapters(
        model, AdapterConfig(r=4, target_modules=["q_proj", "v_proj"]), family, 1
    )
    batch = LalmCollator(QWEN2_AUDIO, processor, processor.tokenizer.pad_token_id)(
        [encode_example(QWEN2_AUDIO, processor, [tone(2.0)], INSTRUCTION, ANSWER)]
    )
    loss = labelled_positions_loss(peft_model, batch)
    assert loss is not None and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and bool(g.abs().sum() > 0) for g in grads)


def test_quantize_embeddings_is_refused_where_the_table_is_tied_to_the_output_layer(
    tiny_random_whisper_dir: Path,
) -> None:
    with pytest.raises(ModelLoadError, match="share their weights with the output layer"):
        load_model(
            ModelConfig(
                name=str(tiny_random_whisper_dir), quantization="nf4", quantize_embeddings=True
            )
        )


def test_every_collated_batch_passes_the_placeholder_guard(loaded) -> None:
    """The collator checks each batch itself (no encoder to hand it): a prompt that lost one
    placeholder is refused before the model would silently misplace audio."""
    _, processor, _ = loaded
    ex = encode_example(QWEN2_AUDIO, processor, [tone(2.0)], INSTRUCTION, ANSWER)
    ids = ex["input_ids"]
    first_audio = int((ids == processor.audio_token_id).nonzero()[0])
    keep = torch.ones_like(ids, dtype=torch.bool)
    keep[first_audio] = False
    tampered = {**ex, "input_ids": ids[keep], "attention_mask": ex["attention_mask"][keep]}
    tampered["labels"] = ex["labels"][keep]
    with pytest.raises(ValueError, match="segment 0: 49 placeholder tokens"):
        LalmCollator(QWEN2_AUDIO, processor)([tampered])


def test_batches_of_short_clips_feed_only_their_real_frames_with_the_same_logits(
    loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tower masks padded frames, so cutting 30 s segments to the longest real one (+2
    frames for its convolutions, rounded up to 1 s) changes no logit and no loss."""
    model, processor, family = loaded
    pad = processor.tokenizer.pad_token_id
    examples = [
        encode_example(QWEN2_AUDIO, processor, [tone(2.37)], INSTRUCTION, ANSWER),
        encode_example(QWEN2_AUDIO, processor, [tone(1.0, 220.0)], INSTRUCTION, "hi"),
    ]
    batch = LalmCollator(QWEN2_AUDIO, processor, pad)(examples)
    assert batch["input_features"].shape[-1] == 3000
    widths = []
    tower = model.get_submodule(family.audio_encoder_prefix)
    tower.register_forward_pre_hook(lambda m, a, k: widths.append(a[0].shape[-1]), with_kwargs=True)
    model.eval()
    with torch.no_grad():
        cut = model(**batch)
        monkeypatch.setattr(type(family), "trims_padded_frames", False)
        full = model(**batch)
    assert widths == [300, 3000]  # 237 real frames + 2, rounded up to 1 s
    torch.testing.assert_close(cut.logits, full.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cut.loss, full.loss)
    assert model.config.audio_config.max_source_positions == 1500
