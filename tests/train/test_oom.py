"""Out of memory in the middle of back-propagation halves the micro-batch, doubles accumulation and carries
on, through the fp16 autocast + GradScaler path; with --accumulate-negatives the objective is unchanged.

The failure is raised by a backward hook on the backbone (train_helpers.oom_in_backward) as CUDA's
allocator raises it, after the heads' gradients of the failed attempt have been accumulated: the retry must
discard them. A real CUDA allocation failure is tested in tests/gpu."""

from __future__ import annotations

import math

import pytest
import torch
from train_helpers import first_batch, make_trainer, oom_in_backward, small_config, tiny_model

from fashionrec.errors import UserError


def fp16_with_scaler(trainer, scale: float = 2.0**8):
    """CPU autocast in float16 and a real (CPU) GradScaler: the path a CUDA GPU without bf16 takes."""
    trainer.amp_dtype = torch.float16
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=scale)
    return trainer


def all_gradients(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p.grad.clone() for group in optimizer.param_groups for p in group["params"]]


@pytest.mark.slow
def test_oom_in_backward_halves_the_micro_batch_and_says_the_negatives_shrink(small_data, cache_dir):
    cfg = small_config(small_data, cache_dir)
    messages: list[str] = []
    trainer = fp16_with_scaler(make_trainer(cfg, tiny_model(cfg), messages.append))
    passed = oom_in_backward(trainer.model, above=4)
    trainer.train_epoch()

    n = len(trainer.data.triplets())
    p = trainer.progress
    assert p.micro_splits == 2
    assert p.samples_in_epoch == n and sum(passed) == 2 * n  # every sample trained exactly once, twice a pass
    assert p.global_step == math.ceil(math.ceil(n / 8) / 2)  # same optimizer steps as without the error
    assert max(passed) == 4
    assert trainer.scaler.is_enabled() and trainer.scaler.get_scale() == 2.0**8  # scaled; no step overflowed
    assert trainer.optimizer.state  # AdamW stepped (through scaler.step)
    assert messages == [
        "CUDA out of memory at micro-batch 8: continuing with micro-batch 4 and 2x the accumulation (the same "
        "samples per optimizer step); the objective changes: each micro-batch's InfoNCE now contrasts a query "
        "with 3 negatives instead of 7 (--accumulate-negatives keeps every negative of the step)"
    ]
    assert math.isfinite(p.epoch_loss_sum)


@pytest.mark.slow
def test_oom_with_accumulate_negatives_leaves_the_loss_and_the_step_unchanged(small_data, cache_dir):
    cfg = small_config(small_data, cache_dir, accumulate_negatives=True, gradient_accumulation=1)
    torch.manual_seed(0)  # the same weights whatever ran before in this process
    model = tiny_model(cfg, dropout=0.0)  # the same micro-batch at another size: dropout masks would differ
    messages: list[str] = []
    failing = fp16_with_scaler(make_trainer(cfg, model, messages.append))
    passed = oom_in_backward(failing.model, above=4)
    clean = fp16_with_scaler(make_trainer(cfg, model))
    group = [first_batch(clean)]
    gradients = {id(failing): [], id(clean): []}
    for trainer in (failing, clean):  # the unscaled gradients AdamW steps with
        record = gradients[id(trainer)].extend
        trainer.optimizer.register_step_pre_hook(lambda opt, *_, record=record: record(all_gradients(opt)))

    loss_after_oom = failing.step(group)
    loss = clean.step(group)

    assert failing.progress.micro_splits == 2 and clean.progress.micro_splits == 1
    assert passed == [4, 4, 4, 4]  # the retry: two micro-batches of 4, reference and target pass each
    assert loss_after_oom == pytest.approx(loss, rel=1e-6)
    assert failing.scaler.get_scale() == clean.scaler.get_scale() == 2.0**8  # no overflow: the step was taken
    # Equal up to float16 rounding (the halves' products are summed in another order): within 2% of each
    # tensor's largest entry (a small tensor's rounding steps come close to 1%), where plain accumulation's
    # other objective moves them by more than 10% (test_accumulate.py).
    for a, b in zip(gradients[id(failing)], gradients[id(clean)], strict=True):
        assert (a - b).abs().max() <= 2e-2 * b.abs().max()
    assert messages == [
        "CUDA out of memory at micro-batch 8: continuing with micro-batch 4 and 2x the accumulation (the same "
        "samples per optimizer step); the objective is unchanged: with --accumulate-negatives every query is "
        "still contrasted with all 8 targets of the step"
    ]


def test_oom_with_a_micro_batch_of_one_is_a_clear_error(small_data, cache_dir):
    cfg = small_config(small_data, cache_dir, batch=1)
    trainer = make_trainer(cfg, tiny_model(cfg))
    oom_in_backward(trainer.model, above=0)
    with pytest.raises(UserError, match="micro-batch of one sample"):
        trainer.step([first_batch(trainer)])
