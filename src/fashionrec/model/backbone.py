"""Image backbones that return a spatial feature map [B, C, H, W] (no pooling: both blocks need positions)."""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    """Four stride-2 conv blocks (stride 16). GroupNorm, not BatchNorm, so a sample's features never depend
    on the rest of its batch and sharded (DDP) training matches single-process training."""

    out_channels = 128

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in widths:
            layers += [
                nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False),
                nn.GroupNorm(8, c),
                nn.ReLU(inplace=True),
            ]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.out_channels = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


# torchvision ResNet-50's stages up to layer4, in order: the feature map without pooling and classifier.
RESNET_STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


class ResNet50Features(nn.Module):
    """torchvision ResNet-50 up to layer4 (stride 32, 2048 channels)."""

    out_channels = 2048

    def __init__(self):
        super().__init__()
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        self.body = nn.Sequential(*(getattr(net, name) for name in RESNET_STAGES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def load_torchvision_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load a torchvision `resnet50` state dict (the classifier head is dropped)."""
        remapped = {}
        for key, value in state.items():
            head = key.split(".", 1)[0]
            if head in RESNET_STAGES:
                remapped[f"body.{RESNET_STAGES.index(head)}.{key.split('.', 1)[1]}"] = value
        self.load_state_dict(remapped, strict=True)


def build_backbone(name: str) -> TinyCNN | ResNet50Features:
    if name == "tiny_cnn":
        return TinyCNN()
    if name == "resnet50":
        return ResNet50Features()
    raise ValueError(f"unknown backbone {name!r}")
