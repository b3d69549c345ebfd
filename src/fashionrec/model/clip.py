"""CLIP-family retrieval models: preset `clip`, CLIP4Cir's sum baseline (Baldrati et al., CVPR Workshops 2022):
reference = normalise(image features + text features), target = normalise(image features); and preset
`clip4cir`, which puts CLIP4Cir's Combiner in place of the sum.

The Combiner (as the paper and its code describe it): the image and text features (dimension d) are each
projected to p = 4d with a linear layer, ReLU and dropout 0.5; their concatenation goes through a linear
layer to h = 8d, ReLU, dropout 0.5 and a linear layer back to d; a second branch of the concatenation
(linear to h, ReLU, dropout 0.5, linear to 1, sigmoid) gives a mixing weight lambda; the output is
    normalise(that + lambda * text features + (1 - lambda) * image features).
Both presets are trained with a logit scale of 100 (temperature 0.01) on the contrastive loss.

Frozen encoders (`frozen_parts`, set by training) stay in eval mode, and training may hand the model their
cached outputs (`ref_image_features`, `tgt_image_features`, `image_features`, `text_features` batch keys)
in place of pixels and token ids."""

from __future__ import annotations

import hashlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fashionrec.model.base import Batch, RetrievalModel
from fashionrec.model.clip_encoders import ClipEncoder
from fashionrec.model.families.clip import ClipConfig


class Combiner(nn.Module):
    """CLIP4Cir's Combiner: projected image and text features, a learned mixing weight, a residual sum."""

    def __init__(self, dim: int, projection_dim: int, hidden_dim: int, dropout: float = 0.5):
        super().__init__()
        self.text_projection = nn.Linear(dim, projection_dim)
        self.image_projection = nn.Linear(dim, projection_dim)
        self.fusion = nn.Linear(2 * projection_dim, hidden_dim)
        self.output = nn.Linear(hidden_dim, dim)
        self.mixing = nn.Sequential(
            nn.Linear(2 * projection_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, 1)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        projected = torch.cat(
            [self.dropout(F.relu(self.text_projection(text))), self.dropout(F.relu(self.image_projection(image)))], -1
        )
        fused = self.output(self.dropout(F.relu(self.fusion(projected))))
        weight = torch.sigmoid(self.mixing(projected))
        return F.normalize(fused + weight * text + (1 - weight) * image, dim=-1)


class ClipRetrieval(RetrievalModel):
    """A CLIP-family model (either library) with the sum or the Combiner on top; uint8 images in."""

    # What a frozen part's cached outputs stand in for: features per image, and per caption text.
    CACHED_INPUTS = {"backbone": "image", "text": "text"}

    def __init__(self, config: ClipConfig, tokenizer: Any, clip_model: nn.Module | None = None):
        """`clip_model`: the library's model, weights loaded (default: a new one of the config's architecture)."""
        super().__init__(config, tokenizer)
        self.encoder = ClipEncoder(config.library, config.architecture, clip_model)
        self.combiner = Combiner(config.embed_dim, **config.combiner) if config.combiner else None
        self.frozen_parts: set[str] = set()

    # ---- the encoders' raw features ---------------------------------------------------------------
    def image_features(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder.encode_image(self.normalise(image)).float()

    def text_features(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.encoder.encode_text(input_ids).float()

    def compose(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The query embedding of reference image features and text features."""
        if self.combiner is None:
            return F.normalize(image + text, dim=-1)
        return self.combiner(image, text)

    # ---- the common interface ---------------------------------------------------------------------
    def encode_reference(
        self,
        image: torch.Tensor,
        crop: torch.Tensor,
        landmarks: torch.Tensor,
        landmark_mask: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Crop and landmarks are not used; nor is the attention mask (see `ClipTokenizer.encode_batch`)."""
        return self.compose(self.image_features(image), self.text_features(input_ids))

    def encode_target(
        self, image: torch.Tensor, crop: torch.Tensor, landmarks: torch.Tensor, landmark_mask: torch.Tensor
    ) -> torch.Tensor:
        return F.normalize(self.image_features(image), dim=-1)

    def _image(self, batch: Batch, prefix: str) -> torch.Tensor:
        cached = batch.get(f"{prefix}image_features")
        return cached.float() if cached is not None else self.image_features(batch[f"{prefix}image"])

    def reference_batch(self, batch: Batch) -> torch.Tensor:
        cached = batch.get("text_features")
        text = cached.float() if cached is not None else self.text_features(batch["input_ids"])
        return self.compose(self._image(batch, "ref_"), text)

    def target_batch(self, batch: Batch, prefix: str = "") -> torch.Tensor:
        return F.normalize(self._image(batch, prefix), dim=-1)

    # ---- frozen parts -----------------------------------------------------------------------------
    def train(self, mode: bool = True) -> ClipRetrieval:
        super().train(mode)
        for part in self.frozen_parts:
            for module in self.encoder.part_modules(part):
                module.eval()
        return self

    def feature_key(self, part: str) -> str:
        """Names the outputs of `part`: its tensors, and what turns the inputs into its inputs (the image
        preprocessing, or the tokenizer)."""
        digest = hashlib.sha256(f"{self.config.library}:{part}".encode())
        for name, tensor in sorted(self.encoder.part_state(part).items()):
            data = tensor.detach().cpu().contiguous()
            digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
            digest.update(memoryview(data.reshape(-1).view(torch.uint8).numpy()))
        source = self.config.preprocess_config().key() if part == "backbone" else self.tokenizer.to_json()
        digest.update(source.encode())
        return digest.hexdigest()[:16]
