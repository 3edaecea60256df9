"""The one interface of every task head: a backbone (bare or PEFT-wrapped) with a head on top.

Why: the Trainer, checkpoints, stages, `eval` and `predict` handle any head the same way, and
know no concrete one. A `HeadModel` saves like a transformers/PEFT model (`save_pretrained`
writes the PEFT adapter, if any, plus the head's weights and config beside it;
`from_pretrained` rebuilds it on a freshly loaded base), and hands its trainable tensors to
checkpoints as one small file (`save_trainable` / `load_trainable`), so a checkpoint is a few MB
instead of a copy of the frozen base.

A subclass has `self.head` (the new module), `head_config()` (what its constructor needs besides
the backbone and the family) and a `forward` returning a dict with `loss` when given targets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from torch import nn

from audiolora.models.families import AudioLanguageFamily
from audiolora.models.loading import load_full_finetune
from audiolora.models.trainable import load_tensors, save_tensors, trainable_names


class HeadModel(nn.Module):
    head: nn.Module
    weights_file: ClassVar[str]
    config_file: ClassVar[str]

    def __init__(self, backbone: nn.Module, family: AudioLanguageFamily) -> None:
        super().__init__()
        self.backbone = backbone
        self.family = family

    def head_config(self) -> dict[str, Any]:
        raise NotImplementedError

    def backbone_trains(self) -> bool:
        return any(p.requires_grad for p in self.backbone.parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters that may get their own learning rate (`Task.head_learning_rate`)."""
        return list(self.head.parameters())

    # ---- persistence -------------------------------------------------------------------------

    def fully_trained(self) -> bool:
        """`adapter.method: full`: a bare backbone whose every weight trains."""
        return not isinstance(self.backbone, PeftModel) and all(
            p.requires_grad for p in self.backbone.parameters()
        )

    def save_pretrained(self, out_dir: str | Path) -> None:
        """The adapter (PEFT format, if any), or the whole backbone as a transformers model
        folder when every weight trained, and the head, for `from_pretrained` later."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if isinstance(self.backbone, PeftModel):
            self.backbone.save_pretrained(str(out_dir))
        elif self.fully_trained():
            self.backbone.save_pretrained(str(out_dir), safe_serialization=True)
        self.save_head(out_dir)

    def save_head(self, out_dir: Path) -> None:
        """The head's weights and config alone (also beside an exported, merged backbone)."""
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()},
            str(out_dir / self.weights_file),
        )
        (out_dir / self.config_file).write_text(
            json.dumps(self.head_config(), indent=2), encoding="utf-8"
        )

    @classmethod
    def from_pretrained(
        cls, base: nn.Module, adapter_dir: str | Path, family: AudioLanguageFamily
    ) -> HeadModel:
        """Rebuild a saved model on top of a freshly loaded base model."""
        adapter_dir = Path(adapter_dir)
        config = cls.saved_config(adapter_dir)
        backbone = base
        device = next(base.parameters()).device
        if (adapter_dir / "adapter_config.json").exists():
            backbone = PeftModel.from_pretrained(base, str(adapter_dir))
        elif (adapter_dir / "config.json").exists():  # a full fine-tune: the whole backbone
            backbone = load_full_finetune(base, adapter_dir, family)
        model = cls(backbone, family, **config)
        model.head.load_state_dict(load_file(str(adapter_dir / cls.weights_file)))
        model.head.to(device)
        return model

    @classmethod
    def saved_config(cls, adapter_dir: Path) -> dict[str, Any]:
        """The head's constructor settings that `save_pretrained` wrote."""
        config_path = Path(adapter_dir) / cls.config_file
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path}: no head config (did training finish?)")
        return json.loads(config_path.read_text(encoding="utf-8"))

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {
            name: p.detach().cpu().contiguous()
            for name, p in self.named_parameters()
            if p.requires_grad
        }

    def save_trainable(self, out_dir: str | Path) -> None:
        """Every trainable tensor (LoRA, head, modules PEFT trains) in one checkpoint file."""
        save_tensors(self, trainable_names(self), Path(out_dir))

    def load_trainable(self, checkpoint_dir: str | Path) -> None:
        """Restore `save_trainable`'s tensors; every trainable tensor must be in the file."""
        load_tensors(self, Path(checkpoint_dir), trainable_names(self))
