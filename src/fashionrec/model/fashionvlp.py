"""FashionVLP (Goenka et al., CVPR 2022): a reference block fuses the reference image with the text feedback
through BERT; a target block embeds catalog images without text. Both share one image backbone."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel

from fashionrec.data.preprocess_config import IMAGENET_MEAN, IMAGENET_STD
from fashionrec.model.backbone import build_backbone
from fashionrec.model.base import RetrievalModel, normalise_pixels
from fashionrec.model.families.fashionvlp import FashionVLPConfig
from fashionrec.model.tokenizer import TextTokenizer

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "FashionVLP", "normalise_pixels", "sample_landmarks"]


def sample_landmarks(feature_map: torch.Tensor, landmarks: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """Bilinear features at landmark points. `landmarks` [B, P, 2] holds (x, y) in [0, 1]; returns [B, P, C]."""
    grid = (landmarks * 2 - 1).unsqueeze(2).to(feature_map.dtype)  # [B, P, 1, 2] in [-1, 1]
    sampled = F.grid_sample(feature_map, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    return sampled.squeeze(-1).transpose(1, 2)  # [B, C, P, 1] -> [B, P, C]


def bert_config(config: FashionVLPConfig) -> BertConfig:
    return BertConfig(**config.text, hidden_dropout_prob=config.dropout, attention_probs_dropout_prob=config.dropout)


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim restricted to `mask`; an all-masked row gives all-zero weights, not NaN (the
    floor is the dtype's smallest normal number: 1e-12 is 0 in float16, and 0 / 0 is NaN)."""
    weights = torch.softmax(logits.masked_fill(~mask, torch.finfo(logits.dtype).min), dim=-1) * mask
    return weights / weights.sum(-1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)


class PositionalAttention(nn.Module):
    """1x1 conv -> softmax over H*W -> attention-weighted sum of the map: [B, C, H, W] -> [B, C]."""

    def __init__(self, channels: int):
        super().__init__()
        self.score = nn.Conv2d(channels, 1, kernel_size=1)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.score(fmap).flatten(1), dim=1)  # [B, H*W]
        return torch.einsum("bn,bcn->bc", weights, fmap.flatten(2))


class LandmarkAttention(nn.Module):
    """Small MLP scores each landmark feature; masked softmax over points; weighted sum: [B, P, C] -> [B, C]."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = masked_softmax(self.score(feats).squeeze(-1), mask)
        return torch.einsum("bp,bpc->bc", weights, feats)


class ReferenceBlock(nn.Module):
    """Text tokens + whole-image, crop and landmark tokens, fused by BERT; the [CLS] output is f_ref."""

    def __init__(self, config: FashionVLPConfig, channels: int):
        super().__init__()
        d = config.d_model
        self.bert = BertModel(bert_config(config), add_pooling_layer=False)
        self.proj_whole = nn.Linear(channels, d)
        self.proj_crop = nn.Linear(channels, d)
        self.proj_landmark = nn.Linear(channels, d)
        # Which kind of visual token this is (whole / crop / landmark), on top of BERT's own embeddings.
        self.kind_embedding = nn.Embedding(3, d)

    def forward(
        self,
        whole_map: torch.Tensor,
        crop_map: torch.Tensor,
        landmark_feats: torch.Tensor,
        landmark_mask: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        kinds = self.kind_embedding.weight
        whole = self.proj_whole(whole_map.flatten(2).transpose(1, 2)) + kinds[0]
        crop = self.proj_crop(crop_map.flatten(2).transpose(1, 2)) + kinds[1]
        marks = self.proj_landmark(landmark_feats) + kinds[2]
        text = self.bert.embeddings.word_embeddings(input_ids)
        visual = torch.cat([whole, crop, marks], dim=1)
        visual_mask = torch.cat(
            [
                torch.ones(whole.shape[:2], dtype=attention_mask.dtype, device=attention_mask.device),
                torch.ones(crop.shape[:2], dtype=attention_mask.dtype, device=attention_mask.device),
                landmark_mask.to(attention_mask.dtype),
            ],
            dim=1,
        )
        embeds = torch.cat([text, visual.to(text.dtype)], dim=1)
        mask = torch.cat([attention_mask, visual_mask], dim=1)
        token_types = torch.cat([torch.zeros_like(attention_mask), torch.ones_like(visual_mask)], dim=1)
        out = self.bert(inputs_embeds=embeds, attention_mask=mask, token_type_ids=token_types)
        return out.last_hidden_state[:, 0]


class TargetBlock(nn.Module):
    """Positional attention on whole and crop maps, landmark attention, contextual fusion: f_tar."""

    def __init__(self, config: FashionVLPConfig, channels: int):
        super().__init__()
        d = config.d_model
        self.whole_attention = PositionalAttention(channels)
        self.crop_attention = PositionalAttention(channels)
        self.landmark_attention = LandmarkAttention(channels, max(channels // 4, 16))
        self.fusion = nn.Sequential(nn.Linear(3 * channels, d), nn.ReLU(inplace=True), nn.LayerNorm(d))
        self.proj = nn.Linear(d, d)

    def forward(
        self, whole_map: torch.Tensor, crop_map: torch.Tensor, landmark_feats: torch.Tensor, landmark_mask: torch.Tensor
    ) -> torch.Tensor:
        fused = torch.cat(
            [
                self.whole_attention(whole_map),
                self.crop_attention(crop_map),
                self.landmark_attention(landmark_feats, landmark_mask),
            ],
            dim=1,
        )
        return self.proj(self.fusion(fused))


class FashionVLP(RetrievalModel):
    """Images enter as uint8 [B, 3, S, S] (or float in [0, 1]); the model normalises them (ImageNet mean/std)."""

    def __init__(self, config: FashionVLPConfig, tokenizer: TextTokenizer):
        super().__init__(config, tokenizer)
        self.backbone = build_backbone(config.backbone)
        channels = self.backbone.out_channels
        self.reference = ReferenceBlock(config, channels)
        self.target = TargetBlock(config, channels)

    def _features(
        self, image: torch.Tensor, crop: torch.Tensor, landmarks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One backbone pass over whole images and crops together; landmark features from the whole map."""
        pixels = self.normalise(torch.cat([image, crop], dim=0))
        whole_map, crop_map = self.backbone(pixels).chunk(2, dim=0)
        return whole_map, crop_map, sample_landmarks(whole_map, landmarks.float())

    def encode_reference(
        self,
        image: torch.Tensor,
        crop: torch.Tensor,
        landmarks: torch.Tensor,
        landmark_mask: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        whole_map, crop_map, marks = self._features(image, crop, landmarks)
        f_ref = self.reference(whole_map, crop_map, marks, landmark_mask.bool(), input_ids, attention_mask)
        return F.normalize(f_ref.float(), dim=-1)

    def encode_target(
        self, image: torch.Tensor, crop: torch.Tensor, landmarks: torch.Tensor, landmark_mask: torch.Tensor
    ) -> torch.Tensor:
        whole_map, crop_map, marks = self._features(image, crop, landmarks)
        return F.normalize(self.target(whole_map, crop_map, marks, landmark_mask.bool()).float(), dim=-1)

    def load_backbone_weights(self, state: dict[str, torch.Tensor]) -> None:
        """A torchvision `resnet50` state dict (its classifier is dropped)."""
        self.backbone.load_torchvision_state(state)

    def load_text_weights(self, directory: Path) -> None:
        """BERT weights from a Hugging Face model folder (no pooler: [CLS] is read before it)."""
        bert = BertModel.from_pretrained(
            directory, add_pooling_layer=False, local_files_only=True, use_safetensors=True
        )
        self.reference.bert.load_state_dict(bert.state_dict())
