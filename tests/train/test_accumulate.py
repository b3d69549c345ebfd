"""--accumulate-negatives: one optimizer step's InfoNCE over all its micro-batches, from cached embeddings.

Compared: the gradients of N micro-batches with feature caching against one batch holding the whole step
(tiny preset: GroupNorm, so no layer looks across the batch; dropout 0, so the two runs draw no random
masks), plain accumulation against the same (it must differ: that is the objective this option fixes),
the replay of each micro-batch's dropout masks, and the BatchNorm statistics the first pass must leave
alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from train_helpers import first_batch, make_trainer, small_config, tiny_model

from fashionrec.train.accumulate import StepParts, StepSnapshot, capture_rng, restore_rng, step_gradients
from fashionrec.train.trainer import split_batch

MICRO_BATCHES = 4


def gradients(model: nn.Module) -> dict[str, torch.Tensor]:
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def run(trainer, chunks, cached: bool) -> tuple[list[float], dict[str, torch.Tensor]]:
    snapshot = StepSnapshot.take(trainer.model, trainer.device)
    losses = step_gradients(trainer.step_parts(), chunks, snapshot, cached=cached)
    return [float(x) for x in losses], gradients(trainer.model)


NEGLIGIBLE = 1e-6  # gradients that are zero up to rounding (softmax-invariant biases): about 1e-9 here


def relative_gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest difference of any gradient tensor, relative to that tensor's largest entry (tensors whose
    gradient is negligible are left out)."""
    assert a.keys() == b.keys()
    return max(((a[k] - b[k]).abs().max() / b[k].abs().max()).item() for k in a if b[k].abs().max() >= NEGLIGIBLE)


def assert_same_gradients(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Equal up to float32 sums in another order: about 1e-5 of each tensor's scale here."""
    assert relative_gap(a, b) < 1e-4
    for name, grad in b.items():
        if grad.abs().max() < NEGLIGIBLE:
            assert (a[name] - grad).abs().max() < 1e-8, name


@pytest.fixture(scope="module")
def no_dropout_trainer(small_data, cache_dir):
    """Seeded: the model's weights (and so the rounding of its gradients) must not depend on which tests ran
    before in this process."""
    cfg = small_config(small_data, cache_dir, accumulate_negatives=True)
    torch.manual_seed(0)
    return make_trainer(cfg, tiny_model(cfg, dropout=0.0))


def test_cached_accumulation_gradients_equal_one_batch_of_the_whole_step(no_dropout_trainer):
    trainer = no_dropout_trainer
    batch = first_batch(trainer)
    assert len(batch["index"]) == 8
    chunks = split_batch(batch, MICRO_BATCHES)
    [whole_loss], whole = run(trainer, [batch], cached=False)
    [cached_loss], cached = run(trainer, chunks, cached=True)
    plain_losses, plain = run(trainer, chunks, cached=False)

    assert len(whole) == len(list(trainer.model.parameters()))  # every parameter got a gradient
    assert cached_loss == pytest.approx(whole_loss, rel=1e-6)
    assert_same_gradients(cached, whole)
    # Plain accumulation optimises another objective (2-way InfoNCE per micro-batch instead of 8-way).
    assert len(plain_losses) == MICRO_BATCHES and sum(plain_losses) / MICRO_BATCHES < whole_loss
    assert relative_gap(plain, whole) > 0.1


def test_cached_accumulation_replays_each_micro_batchs_dropout_masks(small_data, cache_dir):
    """With dropout on, the cached step equals the memory-hungry computation it stands for: every
    micro-batch forward with gradients in turn, one loss over all embeddings, one backward."""
    cfg = small_config(small_data, cache_dir, accumulate_negatives=True)
    trainer = make_trainer(cfg, tiny_model(cfg))
    assert trainer.model.config.dropout > 0
    chunks = split_batch(first_batch(trainer), MICRO_BATCHES)
    start = capture_rng(trainer.device)

    embeddings = [trainer.model(chunk) for chunk in chunks]
    f_ref, f_tar = (torch.cat(column) for column in zip(*embeddings, strict=True))
    loss = trainer.model.loss(f_ref, f_tar)
    loss.backward()
    direct, direct_end = gradients(trainer.model), torch.get_rng_state()

    restore_rng(start, trainer.device)
    [cached_loss], cached = run(trainer, chunks, cached=True)
    assert torch.equal(torch.get_rng_state(), direct_end)  # the step consumed exactly the same random numbers
    assert cached_loss == pytest.approx(loss.item(), rel=1e-6)
    assert_same_gradients(cached, direct)

    restore_rng(start, trainer.device)  # a different dropout stream gives different gradients: the check bites
    torch.manual_seed(12345)
    _, other = run(trainer, chunks, cached=True)
    assert relative_gap(other, direct) > 1e-3


class BatchNormPair(nn.Module):
    """A stand-in model with BatchNorm: (f_ref, f_tar) from the reference and target images."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(12)
        self.proj = nn.Linear(12, 6)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        pooled = images.float().flatten(2).mean(-1).repeat(1, 4)  # [B, 12]
        return nn.functional.normalize(self.proj(self.norm(pooled)), dim=-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embed(batch["ref_image"]), self.embed(batch["tgt_image"])

    def loss(self, f_ref: torch.Tensor, f_tar: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(f_ref @ f_tar.t() / 0.1, torch.arange(len(f_ref)))


def test_the_no_gradient_pass_leaves_batchnorm_statistics_as_plain_accumulation_does(no_dropout_trainer):
    chunks = split_batch(first_batch(no_dropout_trainer), MICRO_BATCHES)
    stats = {}
    for cached in (False, True):
        torch.manual_seed(0)
        model = BatchNormPair()
        parts = StepParts(model, model.loss, torch.amp.GradScaler("cpu", enabled=False), torch.device("cpu"), None)
        step_gradients(parts, chunks, StepSnapshot.take(model, parts.device), cached=cached)
        stats[cached] = {name: b.clone() for name, b in model.named_buffers()}
    # Updated once per micro-batch and image side (reference, target), not again by the replay.
    assert int(stats[True]["norm.num_batches_tracked"]) == 2 * MICRO_BATCHES
    for name, value in stats[False].items():
        assert torch.equal(stats[True][name], value), name
