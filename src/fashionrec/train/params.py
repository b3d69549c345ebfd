"""Training settings: one dataclass, and the `train` / `resume` flag parsers built from it.

`resume` takes every `train` flag with no default: a flag the user leaves out keeps the checkpoint's value
(or the guide's default for checkpoints that carry no settings)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

from fashionrec.errors import UserError
from fashionrec.model.config import PRESETS

CATEGORIES = ("dress", "shirt", "toptee")


@dataclass
class TrainConfig:
    path_file: str = ""
    path_folder: str = ""
    categories: tuple[str, ...] = CATEGORIES
    skip_missing: bool = False
    batch: int = 64
    epochs: int = 100
    gradient_accumulation: int = 2
    mixed_precision: bool = False
    fast_validation: bool = False
    fast_validation_queries: int = 500
    cache_dir: str = "cache"
    crop: str = "foreground"
    landmarks: str = "none"
    yolo_weights: str | None = None
    preset: str = "paper"
    pretrained: bool = True
    text_model: str | None = None
    backbone_weights: str | None = None
    lr: float = 3e-4  # the one-cycle peak (AdamW's own lr of 4e-4 is replaced by the schedule, as originally)
    weight_decay: float = 0.01
    output_dir: str = "checkpoints"
    seed: int = 42
    device: str = "auto"
    num_workers: int = 2
    compile: bool = False
    deterministic: bool = False
    save_every_steps: int = 0
    keep_last: int = 0
    stop_after_epochs: int | None = None
    val_split: str = "val"
    global_negatives: bool = False
    # --accumulate-negatives: the InfoNCE over every micro-batch of an optimizer step (each query against all
    # the step's targets) with one micro-batch's memory: embeddings cached without gradients, micro-batches re-run
    accumulate_negatives: bool = False
    # --backbone-lr: peak LR of the image backbone (None: --lr; with this or --text-lr, one AdamW group per part)
    backbone_lr: float | None = None
    # --text-lr: peak LR of the text model, BERT (None: --lr)
    text_lr: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["categories"] = list(self.categories)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in known})
        cfg.categories = tuple(cfg.categories)
        return cfg


# Settings a resumed run may change; any other flag must equal the checkpoint's value.
CHANGEABLE = {
    "path_file",
    "path_folder",
    "skip_missing",
    "batch",
    "epochs",
    "gradient_accumulation",
    "mixed_precision",
    "fast_validation",
    "fast_validation_queries",
    "cache_dir",
    "lr",
    "output_dir",
    "device",
    "num_workers",
    "compile",
    "deterministic",
    "save_every_steps",
    "keep_last",
    "stop_after_epochs",
    "yolo_weights",
    "text_model",
    "backbone_weights",
    "pretrained",
    "accumulate_negatives",
}


def _categories(text: str) -> tuple[str, ...]:
    cats = tuple(c.strip() for c in text.split(",") if c.strip())
    unknown = [c for c in cats if c not in CATEGORIES]
    if unknown or not cats:
        raise argparse.ArgumentTypeError(
            f"unknown category {', '.join(unknown) or text!r}; choose from {','.join(CATEGORIES)}"
        )
    return cats


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def add_train_arguments(parser: argparse.ArgumentParser, resume: bool) -> None:
    """The flags of `train`; for `resume`, every default is None so omitted flags can be told apart."""
    d = TrainConfig()

    def default(value: Any) -> Any:
        return None if resume else value

    def add(*names: str, help: str, **kw: Any) -> None:
        if not resume and "default" in kw and kw["default"] is not None and kw.get("action") is None:
            help += f" (default: {kw['default']})"
        parser.add_argument(*names, help=help, **kw)

    add(
        "--path-file",
        required=True,
        default=default(None),
        help="annotations folder (captions/ and image_splits/) or legacy folder with train.json/val.json",
    )
    add("--path-folder", required=True, default=default(None), help="images folder: <id>.jpg|png|jpeg")
    add(
        "--categories",
        type=_categories,
        default=default(d.categories),
        help="comma-separated subset of dress,shirt,toptee",
    )
    add(
        "--skip-missing",
        action=argparse.BooleanOptionalAction,
        default=default(False),
        help="drop triplets whose images are absent instead of failing",
    )
    add("--batch", type=_positive, default=default(d.batch), help="micro-batch size")
    add("--epochs", type=_positive, default=default(d.epochs), help="total epochs of the run (not the remainder)")
    add(
        "--gradient-accumulation",
        type=_positive,
        default=default(d.gradient_accumulation),
        help="micro-batches per optimizer step",
    )
    add(
        "--mixed-precision",
        action=argparse.BooleanOptionalAction,
        default=default(False),
        help="bf16 autocast where supported, else fp16 with a grad scaler on CUDA",
    )
    add(
        "--fast-validation",
        action=argparse.BooleanOptionalAction,
        default=default(False),
        help="validate on a fixed, seeded subset of queries against the full gallery",
    )
    add(
        "--fast-validation-queries",
        type=_positive,
        default=default(d.fast_validation_queries),
        help="queries per category with --fast-validation",
    )
    add("--cache-dir", default=default(d.cache_dir), help="preprocessing cache folder")
    add("--crop", choices=("none", "foreground", "yolo"), default=default(d.crop), help="clothing crop backend")
    add("--landmarks", choices=("none", "mediapipe"), default=default(d.landmarks), help="landmark backend")
    add("--yolo-weights", default=None, help="weights file for --crop yolo")
    add("--preset", choices=PRESETS, default=default(d.preset), help="model preset")
    add(
        "--no-pretrained",
        dest="pretrained",
        action="store_false",
        default=None if resume else True,
        help="random initialisation instead of local pretrained weights",
    )
    add("--text-model", default=None, help="BERT-family model directory (or a name in the local Hugging Face cache)")
    add("--backbone-weights", default=None, help="torchvision ResNet-50 weights file")
    add(
        "--lr",
        type=float,
        default=default(d.lr),
        help="peak learning rate of the one-cycle schedule; on resume, the peak of the remaining schedule",
    )
    add("--weight-decay", type=float, default=default(d.weight_decay), help="AdamW weight decay")
    add(
        "--output-dir",
        default=default(d.output_dir) if not resume else None,
        help="checkpoint folder" + (" (default: the checkpoint's folder)" if resume else ""),
    )
    add("--seed", type=int, default=default(d.seed), help="seed for initialisation and data order")
    add("--device", default=default(d.device), help="auto, cpu, cuda or cuda:N")
    add("--num-workers", type=_non_negative, default=default(d.num_workers), help="data loader worker processes")
    add("--compile", action=argparse.BooleanOptionalAction, default=default(False), help="torch.compile the model")
    add(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        default=default(False),
        help="deterministic kernels only, so a GPU resume is bit-exact too (slower)",
    )
    add(
        "--save-every-steps",
        type=_non_negative,
        default=default(d.save_every_steps),
        help="also checkpoint every N optimizer steps inside an epoch (0: off)",
    )
    add(
        "--keep-last",
        type=_non_negative,
        default=default(d.keep_last),
        help="keep only the newest N periodic checkpoints (0: keep all; best and final are never pruned)",
    )
    add(
        "--stop-after-epochs",
        type=_positive,
        default=None,
        help="stop (resumably) once this many epochs are complete, keeping the schedule of --epochs",
    )
    add("--val-split", default=default(d.val_split), help="split used for validation")
    add(
        "--global-negatives",
        action=argparse.BooleanOptionalAction,
        default=default(False),
        help="distributed: contrast against the targets of every rank",
    )
    add(
        "--accumulate-negatives",
        action=argparse.BooleanOptionalAction,
        default=default(False),
        help="InfoNCE over all micro-batches of an optimizer step (every target a negative), with the memory "
        "of one micro-batch: embeddings are cached without gradients, then each micro-batch is re-run",
    )
    add(
        "--backbone-lr",
        type=float,
        default=None,
        help="peak learning rate of the image backbone (default: --lr; fixed on resume)",
    )
    add(
        "--text-lr",
        type=float,
        default=None,
        help="peak learning rate of the text model (default: --lr; fixed on resume)",
    )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in known and v is not None})


def merge_resume_config(args: argparse.Namespace, saved: dict[str, Any] | None) -> tuple[TrainConfig, list[str]]:
    """Explicit flags over the checkpoint's settings over defaults. Returns the config and the names of
    settings the user changed. A fixed setting given with another value is a user error."""
    explicit = {
        k: v for k, v in vars(args).items() if v is not None and k in {f.name for f in dataclasses.fields(TrainConfig)}
    }
    if saved is None:
        return TrainConfig(**explicit), sorted(explicit)
    base = TrainConfig.from_dict(saved)
    base.stop_after_epochs = None  # a stop point belongs to the run that set it, not to the runs after it
    changed = []
    for key, value in explicit.items():
        old = getattr(base, key)
        if isinstance(old, tuple):
            value = tuple(value)
        if value == old:
            continue
        if key not in CHANGEABLE:
            flag = "--" + key.replace("_", "-")
            raise UserError(f"{flag} {value!r} contradicts the checkpoint, which was trained with {old!r}")
        changed.append(key)
        setattr(base, key, value)
    return base, changed
