import torch

from audiolora.config import SpecAugmentConfig
from audiolora.data.augment import install_spec_augment, spec_augment


class Echo(torch.nn.Module):
    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        return input_features


def test_masks_bands_with_the_utterance_mean() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 80, 300)
    cfg = SpecAugmentConfig(freq_masks=1, freq_mask_width=20, time_masks=1, time_mask_width=50)
    y = spec_augment(x, cfg)
    assert y.shape == x.shape
    changed = (y != x).float().mean().item()
    assert 0 < changed < 0.6
    assert torch.allclose(y[y != x].unique().sort().values, x.mean(dim=(1, 2)).sort().values)


def test_hook_masks_training_forwards_only() -> None:
    model = Echo()
    cfg = SpecAugmentConfig(freq_masks=2, freq_mask_width=30, time_masks=2, time_mask_width=60)
    install_spec_augment(model, cfg)
    x = torch.randn(1, 80, 300)
    model.train()
    torch.manual_seed(1)
    assert not torch.equal(model(input_features=x), x)
    model.eval()
    assert torch.equal(model(input_features=x), x)


def test_same_seed_same_masks() -> None:
    x = torch.randn(1, 80, 300)
    cfg = SpecAugmentConfig()
    torch.manual_seed(3)
    a = spec_augment(x, cfg)
    torch.manual_seed(3)
    assert torch.equal(a, spec_augment(x, cfg))


def test_disabled_installs_nothing() -> None:
    assert install_spec_augment(Echo(), SpecAugmentConfig(enabled=False)) is None
