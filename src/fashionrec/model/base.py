"""What every family's model is: uint8 images in (normalised here, with the model's own pixel mean and std),
L2-normalised embeddings out, so training, evaluation, the index and the server never name a model class."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fashionrec.model.config import ModelConfig
from fashionrec.model.loss import contrastive_loss

Batch = dict[str, torch.Tensor]


def normalise_pixels(pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] (or float [0, 1]) images to normalised floats, as torchvision's ToTensor + Normalize
    would give."""
    if pixels.dtype == torch.uint8:
        pixels = pixels.float().div_(255)
    return (pixels - mean) / std


class RetrievalModel(nn.Module):
    """The common interface. A family's model implements `encode_reference` and `encode_target`; datasets
    hand it batches (`ref_`/`tgt_` keys for training triplets, bare keys for gallery images), which
    `reference_batch` and `target_batch` unpack (a model that takes precomputed features reads them there)."""

    def __init__(self, config: ModelConfig, tokenizer: Any):
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        settings = config.preprocess_config()
        self.register_buffer("pixel_mean", torch.tensor(settings.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(settings.std).view(1, 3, 1, 1), persistent=False)

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        return normalise_pixels(image, self.pixel_mean, self.pixel_std)

    def encode_reference(
        self,
        image: torch.Tensor,
        crop: torch.Tensor,
        landmarks: torch.Tensor,
        landmark_mask: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Reference image + feedback text -> [B, d], L2-normalised."""
        raise NotImplementedError

    def encode_target(
        self, image: torch.Tensor, crop: torch.Tensor, landmarks: torch.Tensor, landmark_mask: torch.Tensor
    ) -> torch.Tensor:
        """Catalog image -> [B, d], L2-normalised."""
        raise NotImplementedError

    def reference_batch(self, batch: Batch) -> torch.Tensor:
        return self.encode_reference(
            batch["ref_image"],
            batch["ref_crop"],
            batch["ref_landmarks"],
            batch["ref_landmark_mask"],
            batch["input_ids"],
            batch["attention_mask"],
        )

    def target_batch(self, batch: Batch, prefix: str = "") -> torch.Tensor:
        return self.encode_target(
            batch[f"{prefix}image"],
            batch[f"{prefix}crop"],
            batch[f"{prefix}landmarks"],
            batch[f"{prefix}landmark_mask"],
        )

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return self.reference_batch(batch), self.target_batch(batch, "tgt_")

    def loss(self, f_ref: torch.Tensor, f_tar: torch.Tensor, target_offset: int = 0) -> torch.Tensor:
        return contrastive_loss(f_ref, f_tar, self.config.temperature, target_offset)
