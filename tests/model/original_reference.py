"""A written spec of the original public system's model, for tests only: its module tree, attribute names,
registration order and forward, following `modules/fashion_vlp.py`, `modules/blocks.py`,
`modules/attention.py` and `modules/landmark_detection.py` of that system. torchvision's ResNet-50 stands in
for timm's `resnet50(num_classes=0, global_pool="")` (the same parameter names and order); BERT's sizes come
from the `BertConfig` given, so tests can shrink it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet
from transformers import BertConfig, BertModel


class TimmResNet50(ResNet):
    """No classifier, no pooling; `forward_features` gives the [B, 2048, H/32, W/32] map, as timm's does."""

    def __init__(self):
        super().__init__(Bottleneck, [3, 4, 6, 3])
        del self.fc
        del self.avgpool
        self.num_features = 2048

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class LandmarkDetection:
    """Not a module: only its feature sampler matters to the model."""

    def get_landmark_features(self, feature_map: torch.Tensor, normalized_landmarks: torch.Tensor) -> torch.Tensor:
        b, n, _ = normalized_landmarks.shape
        grid = (normalized_landmarks * 2 - 1).view(b, 1, n, 2)
        sampled = F.grid_sample(feature_map, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return sampled.squeeze(2).permute(0, 2, 1)


class PositionalAttention(nn.Module):
    def __init__(self, in_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(in_dim, 1, kernel_size=1)

    def forward(self, x_spatial: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x_spatial.shape
        attn_map = F.softmax(self.conv(x_spatial).view(b, -1), dim=1).view(b, 1, h, w)
        return (x_spatial * attn_map).sum(dim=(2, 3))


class LandmarkAttention(nn.Module):
    def __init__(self, d_img: int):
        super().__init__()
        self.attn = nn.Sequential(nn.Linear(d_img, d_img // 2), nn.ReLU(), nn.Linear(d_img // 2, 1))

    def forward(self, x_landmarks: torch.Tensor) -> torch.Tensor:
        weights = F.softmax(self.attn(x_landmarks), dim=1)
        return (x_landmarks * weights).sum(dim=1)


class ContextualAttention(nn.Module):
    def __init__(self, d_img: int, d_fused_out: int):
        super().__init__()
        self.fuse_layer = nn.Sequential(nn.Linear(d_img * 3, d_fused_out), nn.ReLU(), nn.LayerNorm(d_fused_out))

    def forward(self, f_whole, f_crop, f_lmk):
        return self.fuse_layer(torch.cat([f_whole, f_crop, f_lmk], dim=1))


class TargetBlock(nn.Module):
    def __init__(self, feature_extractor, landmark, d_img, d_model):
        super().__init__()
        self.feature_extractor = feature_extractor
        self.d_img = d_img
        self.landmark_detection = landmark
        self.pos_attn_whole = PositionalAttention(d_img)
        self.pos_attn_crop = PositionalAttention(d_img)
        self.lmk_attn = LandmarkAttention(d_img)
        self.ctx_attn = ContextualAttention(d_img, d_img)
        self.projection = nn.Linear(d_img, d_model)

    def forward(self, target_image, cropped_image, landmark_locations):
        f_whole_spat = self.feature_extractor.forward_features(target_image)
        f_crop_spat = self.feature_extractor.forward_features(cropped_image)
        f_lmk_spat = self.landmark_detection.get_landmark_features(f_whole_spat, landmark_locations)
        fused = self.ctx_attn(
            self.pos_attn_whole(f_whole_spat), self.pos_attn_crop(f_crop_spat), self.lmk_attn(f_lmk_spat)
        )
        return self.projection(fused)


class ReferenceBlock(nn.Module):
    def __init__(self, feature_extractor, vlp_transformer, landmark, d_img, d_model):
        super().__init__()
        self.feature_extractor = feature_extractor
        self.vlp_transformer = vlp_transformer
        self.landmark_detection = landmark
        self.img_feat_proj = nn.Linear(d_img, d_model)

    def forward(self, ref_image, cropped_image, text_tokens, landmark_locations):
        f_whole_spat = self.feature_extractor.forward_features(ref_image)
        f_crop_spat = self.feature_extractor.forward_features(cropped_image)
        f_lmk_spat = self.landmark_detection.get_landmark_features(f_whole_spat, landmark_locations)
        f_whole_seq = self.img_feat_proj(f_whole_spat.flatten(2).transpose(1, 2))
        f_crop_seq = self.img_feat_proj(f_crop_spat.flatten(2).transpose(1, 2))
        f_lmk_seq = self.img_feat_proj(f_lmk_spat)
        text_embeddings = self.vlp_transformer.embeddings(input_ids=text_tokens)
        combined = torch.cat([text_embeddings, f_whole_seq, f_crop_seq, f_lmk_seq], dim=1)
        attention_mask = torch.ones(combined.shape[:2], device=combined.device)
        out = self.vlp_transformer(inputs_embeds=combined, attention_mask=attention_mask)
        return out.last_hidden_state[:, 0, :]


class FashionVLP(nn.Module):
    def __init__(self, bert_config: BertConfig):
        super().__init__()
        feature_extractor = TimmResNet50()
        d_img, d_model = feature_extractor.num_features, bert_config.hidden_size
        vlp_transformer = BertModel(bert_config)
        landmark_detection = LandmarkDetection()
        self.target_block = TargetBlock(feature_extractor, landmark_detection, d_img, d_model)
        self.reference_block = ReferenceBlock(feature_extractor, vlp_transformer, landmark_detection, d_img, d_model)

    def forward(
        self, ref_image, text_tokens, target_image, crop_reference_image, crop_target_image, landmark_locations
    ):
        f_ref = self.reference_block(ref_image, crop_reference_image, text_tokens, landmark_locations)
        f_tar = self.target_block(target_image, crop_target_image, landmark_locations)
        return f_ref, f_tar


class Compiled(nn.Module):
    """What torch.compile returns, as far as state dicts go: the model under `_orig_mod`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self._orig_mod = model

    def forward(self, *args):
        return self._orig_mod(*args)


def batch_classification_loss(f_ref, f_tar, temperature=0.07):
    f_ref = F.normalize(f_ref, p=2, dim=1)
    f_tar = F.normalize(f_tar, p=2, dim=1)
    logits = torch.matmul(f_ref, f_tar.t()) / temperature
    return F.cross_entropy(logits, torch.arange(f_ref.shape[0]))
