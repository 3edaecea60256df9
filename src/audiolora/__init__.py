"""audiolora: LoRA / QLoRA fine-tuning of audio-language models, measured end to end."""

__version__ = "0.1.0"
