"""The input embedding table in 4 or 8 bits (`model.quantize_embeddings`).

Why: transformers' bitsandbytes quantizer leaves embeddings alone, yet with a large vocabulary
the table is the biggest piece a QLoRA model keeps in full precision (Qwen2-Audio-7B: 0.6 B
parameters), and it is frozen: the LoRA gradient never needs it in full precision.

bitsandbytes' embedding modules refuse to be saved; these write nothing instead, since the table
is the base's and is rebuilt from the base checkpoint on every load (adapters and checkpoints
never carry it). NF4 tables use single quantization: bitsandbytes (0.50) looks rows up by
gathering their blocks' constants, which is wrong for double-quantized constants (rows came out
off by up to 21 on a table whose rows differ in scale) and exact for plain ones.
"""

from __future__ import annotations

from typing import Any

import bitsandbytes as bnb
from torch import nn

BLOCKSIZE = 64
"""NF4 block; rows must hold whole blocks, or every lookup dequantizes the whole table."""


class FrozenEmbeddingNF4(bnb.nn.EmbeddingNF4):
    """bitsandbytes' NF4 table that leaves itself out of state dicts."""

    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        pass


class FrozenEmbedding8bit(bnb.nn.Embedding8bit):
    """bitsandbytes' int8 table that leaves itself out of state dicts."""

    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        pass


def quantize_input_embeddings(model: nn.Module, quantization: str) -> None:
    """Replace `model`'s input embedding table with an NF4 (`quantization="nf4"`) or int8 one
    on the table's device; output rows keep the table's dtype. ValueError where the table is
    tied to the output layer, is not a plain `nn.Embedding`, or (NF4) its rows are not whole
    blocks."""
    table = model.get_input_embeddings()
    output = model.get_output_embeddings()
    if output is not None and getattr(output, "weight", None) is table.weight:
        raise ValueError(
            "its input embeddings share their weights with the output layer; "
            "model.quantize_embeddings would leave a full-precision copy behind. Remove the "
            "setting."
        )
    if type(table) is not nn.Embedding:  # a subclass may scale or offset in its forward
        raise ValueError(
            f"model.quantize_embeddings needs a plain embedding table, not "
            f"{type(table).__name__}. Remove the setting."
        )
    weight = table.weight.data
    rows, width = weight.shape
    quantized: nn.Module
    if quantization == "nf4":
        if width % BLOCKSIZE:
            raise ValueError(
                f"embedding width {width} is not a multiple of {BLOCKSIZE}, so bitsandbytes "
                "would dequantize the whole 4-bit table for every lookup. Remove "
                "model.quantize_embeddings or use model.quantization=int8."
            )
        quantized = FrozenEmbeddingNF4(rows, width, dtype=weight.dtype, device="meta")
        quantized.weight = bnb.nn.Params4bit(
            weight,
            requires_grad=False,
            quant_type="nf4",
            blocksize=BLOCKSIZE,
            compress_statistics=False,
        )
    elif quantization == "int8":
        quantized = FrozenEmbedding8bit(rows, width, dtype=weight.dtype, device="meta")
        # Int8Params quantize when they move off the CPU (or onto it), not from a GPU tensor.
        quantized.weight = bnb.nn.Int8Params(
            weight.to("cpu"), requires_grad=False, has_fp16_weights=False
        )
    else:
        raise ValueError(f"model.quantize_embeddings needs nf4 or int8, not {quantization!r}")
    model.set_input_embeddings(quantized.to(weight.device))  # moving quantizes
