"""The original public FashionVLP system's model, rebuilt parameter for parameter (same names and shapes as
its `model.named_parameters()`) and computing the same function, quirks included, so that its checkpoints
load as what their owners trained. The quirks (each kept on purpose, see docs/original.md):

1. Text ids go through BERT's embeddings, and the result is passed to BERT again as `inputs_embeds`:
   position and token-type embeddings, LayerNorm and dropout are applied twice to the text.
2. The attention mask is all ones: padding tokens and absent landmarks are attended like the rest.
3. Landmark features are bilinear samples of the whole-image map (border padding, align_corners=False)
   at all 14 points; an absent point is (0, 0) and is sampled and attended like a real one.
4. In `forward(batch)` (training) the target block is given the *reference* image's landmarks, as the
   original's batches held one landmark tensor for both; `encode_target` alone (gallery, index, serving)
   uses the image's own points, as the original's feature extractor did.
5. The backbone runs once per image batch (reference whole, reference crop, target whole, target crop),
   so in training BatchNorm normalises each by its own statistics and updates its running averages four
   times per step, in that order.

The ResNet-50 is shared by both blocks; the original's state dict lists it twice
(`target_block.feature_extractor.` and `reference_block.feature_extractor.`), this model keeps the one copy
that `named_parameters()` reports, under `target_block.`. Its width is fixed by those names (2048 channels);
the text width follows `config.text`, so tests can use a small BERT and small images.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertModel

from fashionrec.model.backbone import RESNET_STAGES
from fashionrec.model.base import RetrievalModel
from fashionrec.model.families.fashionvlp import FashionVLPConfig
from fashionrec.model.fashionvlp import bert_config, sample_landmarks
from fashionrec.model.tokenizer import TextTokenizer

IMAGE_CHANNELS = 2048  # ResNet-50's last stage


class ResNet50Trunk(nn.Module):
    """torchvision's ResNet-50 without pooling and classifier. Its state-dict keys (`conv1.weight`,
    `layer1.0.downsample.0.weight`, ...) and parameter order equal those of timm's
    `resnet50(num_classes=0, global_pool="")`, the original's backbone, whose `forward_features` this is."""

    def __init__(self):
        super().__init__()
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        for name in RESNET_STAGES:
            self.add_module(name, getattr(net, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.children():
            x = stage(x)
        return x


class PositionalAttention(nn.Module):
    """A 1x1 conv scores every position; softmax over H*W; the weighted sum of the map: [B, C, H, W] -> [B, C]."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, kernel_size=1)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        b, _, h, w = fmap.shape
        weights = F.softmax(self.conv(fmap).view(b, -1), dim=1).view(b, 1, h, w)
        return (fmap * weights).sum(dim=(2, 3))


class LandmarkAttention(nn.Module):
    """An MLP (C -> C/2 -> 1) scores each landmark feature; softmax over all points, no mask: [B, L, C] -> [B, C]."""

    def __init__(self, channels: int):
        super().__init__()
        self.attn = nn.Sequential(nn.Linear(channels, channels // 2), nn.ReLU(), nn.Linear(channels // 2, 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return (feats * F.softmax(self.attn(feats), dim=1)).sum(dim=1)


class ContextualAttention(nn.Module):
    """Whole, crop and landmark vectors concatenated, then Linear(3C -> C) + ReLU + LayerNorm."""

    def __init__(self, channels: int):
        super().__init__()
        self.fuse_layer = nn.Sequential(nn.Linear(3 * channels, channels), nn.ReLU(), nn.LayerNorm(channels))

    def forward(self, whole: torch.Tensor, crop: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        return self.fuse_layer(torch.cat([whole, crop, landmarks], dim=1))


class TargetBlock(nn.Module):
    """Owns the shared backbone (registered here first, as in the original) and turns three feature maps into f_tar."""

    def __init__(self, config: FashionVLPConfig):
        super().__init__()
        self.feature_extractor = ResNet50Trunk()
        self.pos_attn_whole = PositionalAttention(IMAGE_CHANNELS)
        self.pos_attn_crop = PositionalAttention(IMAGE_CHANNELS)
        self.lmk_attn = LandmarkAttention(IMAGE_CHANNELS)
        self.ctx_attn = ContextualAttention(IMAGE_CHANNELS)
        self.projection = nn.Linear(IMAGE_CHANNELS, config.d_model)

    def forward(self, whole_map: torch.Tensor, crop_map: torch.Tensor, landmark_feats: torch.Tensor) -> torch.Tensor:
        fused = self.ctx_attn(
            self.pos_attn_whole(whole_map), self.pos_attn_crop(crop_map), self.lmk_attn(landmark_feats)
        )
        return self.projection(fused)


class ReferenceBlock(nn.Module):
    """[text, whole-map positions, crop-map positions, landmarks] through BERT (pooler kept, as in the
    original's weights); one projection for every visual token; the [CLS] output is f_ref."""

    def __init__(self, config: FashionVLPConfig):
        super().__init__()
        self.vlp_transformer = BertModel(bert_config(config), add_pooling_layer=True)
        self.img_feat_proj = nn.Linear(IMAGE_CHANNELS, config.d_model)

    def forward(
        self, whole_map: torch.Tensor, crop_map: torch.Tensor, landmark_feats: torch.Tensor, input_ids: torch.Tensor
    ) -> torch.Tensor:
        sequence = torch.cat(
            [
                self.vlp_transformer.embeddings(input_ids=input_ids),  # quirk 1: embedded here, and again below
                self.img_feat_proj(whole_map.flatten(2).transpose(1, 2)),
                self.img_feat_proj(crop_map.flatten(2).transpose(1, 2)),
                self.img_feat_proj(landmark_feats),
            ],
            dim=1,
        )
        mask = torch.ones(sequence.shape[:2], device=sequence.device)  # quirk 2
        return self.vlp_transformer(inputs_embeds=sequence, attention_mask=mask).last_hidden_state[:, 0]


class OriginalFashionVLP(RetrievalModel):
    """The `original` preset, with the interface of `FashionVLP`: uint8 images in, L2-normalised embeddings out."""

    def __init__(self, config: FashionVLPConfig, tokenizer: TextTokenizer):
        super().__init__(config, tokenizer)
        self.target_block = TargetBlock(config)
        self.reference_block = ReferenceBlock(config)

    @property
    def backbone(self) -> ResNet50Trunk:
        return self.target_block.feature_extractor

    def _feature_map(self, image: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalise(image))

    @staticmethod
    def _landmark_features(
        whole_map: torch.Tensor, landmarks: torch.Tensor, landmark_mask: torch.Tensor
    ) -> torch.Tensor:
        """Quirk 3: absent points are (0, 0), sampled with border padding like the others."""
        points = landmarks.float() * landmark_mask.unsqueeze(-1).to(torch.float32)
        return sample_landmarks(whole_map, points, padding_mode="border")

    def encode_reference(
        self,
        image: torch.Tensor,
        crop: torch.Tensor,
        landmarks: torch.Tensor,
        landmark_mask: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        """`attention_mask` is accepted for the common interface and ignored (quirk 2)."""
        whole_map, crop_map = self._feature_map(image), self._feature_map(crop)
        marks = self._landmark_features(whole_map, landmarks, landmark_mask)
        return F.normalize(self.reference_block(whole_map, crop_map, marks, input_ids).float(), dim=-1)

    def encode_target(
        self, image: torch.Tensor, crop: torch.Tensor, landmarks: torch.Tensor, landmark_mask: torch.Tensor
    ) -> torch.Tensor:
        whole_map, crop_map = self._feature_map(image), self._feature_map(crop)
        marks = self._landmark_features(whole_map, landmarks, landmark_mask)
        return F.normalize(self.target_block(whole_map, crop_map, marks).float(), dim=-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        f_ref = self.encode_reference(
            batch["ref_image"],
            batch["ref_crop"],
            batch["ref_landmarks"],
            batch["ref_landmark_mask"],
            batch["input_ids"],
            batch["attention_mask"],
        )
        # Quirk 4: the target block sees the reference's landmarks.
        f_tar = self.encode_target(
            batch["tgt_image"], batch["tgt_crop"], batch["ref_landmarks"], batch["ref_landmark_mask"]
        )
        return f_ref, f_tar

    def load_backbone_weights(self, state: dict[str, torch.Tensor]) -> None:
        """A torchvision `resnet50` state dict: the names already match; its classifier is dropped."""
        self.backbone.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})

    def load_text_weights(self, directory: Path) -> None:
        """BERT weights, pooler included, from a Hugging Face model folder."""
        bert = BertModel.from_pretrained(directory, add_pooling_layer=True, local_files_only=True, use_safetensors=True)
        self.reference_block.vlp_transformer.load_state_dict(bert.state_dict())
