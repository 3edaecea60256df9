"""A random-weight Qwen2-Audio-class model of any size, built on the spot with no download.

Why: where neither a hub nor the embedded model's pip packages can be reached (the test suite,
a GPU machine with no network), training, 4-bit loading, memory and speed can still be checked
on the real architecture. The tokenizer is byte-level with no merges (a few hundred tokens), so
the language model's layers, not its vocabulary, carry the parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audiolora.builtin.assemble import AUDIO_BOS_TOKEN, AUDIO_EOS_TOKEN, AUDIO_TOKEN, CHAT_TEMPLATE

TINY_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
"""The test suite's language model: 2 layers, 64 wide."""

TINY_AUDIO = {
    "d_model": 64,
    "encoder_layers": 2,
    "encoder_attention_heads": 2,
    "encoder_ffn_dim": 128,
}
"""The test suite's audio tower."""


CHAT_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
"""Padding, and the chat template's turn markers (the end of a turn ends generation)."""


def byte_level_tokenizer(specials: list[str]) -> Any:
    """A `Qwen2Tokenizer` over the 256 byte symbols with no merges, then `specials` (the first
    is padding, `<|im_end|>` ends a turn; the rest are additional special tokens)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    vocab = {ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet()))}
    vocab.update({tok: len(vocab) + i for i, tok in enumerate(specials)})
    # vocab=/merges= objects: vocab_file= is silently ignored in transformers 5.
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=[], eos_token="<|im_end|>", pad_token=specials[0]
    )
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    return tokenizer


def byte_level_processor() -> Any:
    """A `Qwen2AudioProcessor` over a byte-level tokenizer with the chat and audio tokens of
    the assembled model (its chat template included)."""
    from transformers import Qwen2AudioProcessor, WhisperFeatureExtractor

    tokenizer = byte_level_tokenizer([*CHAT_TOKENS, AUDIO_BOS_TOKEN, AUDIO_TOKEN, AUDIO_EOS_TOKEN])
    return Qwen2AudioProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=80),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )


def save_random_qwen2_audio(
    out: Path,
    *,
    text: dict[str, int] | None = None,
    audio: dict[str, int] | None = None,
    seed: int = 0,
    dtype: str = "float32",
) -> Path:
    """A `Qwen2AudioForConditionalGeneration` with random weights (`seed`) and
    `byte_level_processor()`, saved as an ordinary transformers folder `out`. `text` and `audio`
    set the language model's and the tower's sizes (default: `TINY_TEXT`, `TINY_AUDIO`)."""
    import torch
    from transformers import (
        Qwen2AudioConfig,
        Qwen2AudioEncoderConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2Config,
    )

    processor = byte_level_processor()
    tokenizer = processor.tokenizer
    config = Qwen2AudioConfig(
        audio_config=Qwen2AudioEncoderConfig(
            num_mel_bins=80, max_source_positions=1500, **(audio or TINY_AUDIO)
        ),
        text_config=Qwen2Config(
            **(text or TINY_TEXT),
            vocab_size=len(tokenizer),
            max_position_embeddings=4096,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        audio_token_index=tokenizer.convert_tokens_to_ids(AUDIO_TOKEN),
    )
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(config).to(getattr(torch, dtype))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
