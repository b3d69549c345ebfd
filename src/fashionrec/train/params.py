"""Training settings: one dataclass whose fields carry their flag, help and check. The `train` and
`resume` parsers and the set of settings a resume may change are generated from it.

`resume` takes every `train` flag with no default: a flag the user leaves out keeps the checkpoint's value
(or, for checkpoints that carry no settings, the default of the original system's resume-training guide,
its Vietnamese "Hướng dẫn Resume Training" document)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

from fashionrec import options as opt
from fashionrec.data.fashioniq import SPLITS
from fashionrec.errors import UserError
from fashionrec.model.config import preset_config
from fashionrec.model.registry import PresetNames

VALIDATION_PROTOCOLS = ("standard", "original")


def setting(option: opt.Option, *, changeable: bool) -> Any:
    """A TrainConfig field defined by its command-line `option`. `changeable`: a resume may set another
    value than the checkpoint's (otherwise it must match)."""
    return dataclasses.field(default=option.default, metadata={"option": option, "changeable": changeable})


def _preset_default(option: opt.Option) -> opt.Option:
    return dataclasses.replace(option, shown_default="the preset's")


@dataclass
class TrainConfig:
    path_file: str = setting(opt.PATH_FILE.with_default(""), changeable=True)
    path_folder: str = setting(opt.PATH_FOLDER.with_default(""), changeable=True)
    categories: tuple[str, ...] | None = setting(opt.CATEGORIES, changeable=False)
    skip_missing: bool = setting(opt.SKIP_MISSING, changeable=True)
    batch: int = setting(opt.BATCH, changeable=True)
    epochs: int = setting(
        opt.Option(
            "--epochs", 100, "total epochs of the run (not the remainder)", type=opt.positive_int, group="optimisation"
        ),
        changeable=True,
    )
    gradient_accumulation: int = setting(
        opt.Option(
            "--gradient-accumulation",
            2,
            "micro-batches per optimizer step",
            type=opt.positive_int,
            group="optimisation",
        ),
        changeable=True,
    )
    mixed_precision: bool = setting(
        opt.Option(
            "--mixed-precision",
            False,
            "bf16 autocast where the device computes in bf16, fp16 with a grad scaler on older CUDA GPUs; "
            "fp32 on CPUs without bf16 arithmetic (says so)",
            switch=True,
            group="optimisation",
        ),
        changeable=True,
    )
    fast_validation: bool = setting(
        opt.Option(
            "--fast-validation",
            False,
            "validate on a fixed, seeded subset of queries against the full gallery",
            switch=True,
            group="evaluation",
        ),
        changeable=True,
    )
    validation: str = setting(
        opt.Option(
            "--validation",
            "standard",
            "validation protocol: standard (FashionIQ: each category's gallery of unique images) or original (the "
            "original system's number: each query's target among the targets of the validated triplets; with "
            "--fast-validation its first 30 batches)",
            choices=VALIDATION_PROTOCOLS,
        ),
        changeable=True,
    )
    fast_validation_queries: int = setting(
        opt.Option(
            "--fast-validation-queries",
            500,
            "queries per category with --fast-validation",
            type=opt.positive_int,
            group="evaluation",
        ),
        changeable=True,
    )
    cache_dir: str = setting(opt.CACHE_DIR, changeable=True)
    crop: str | None = setting(
        _preset_default(opt.CROP),
        changeable=False,
    )
    landmarks: str | None = setting(
        _preset_default(opt.LANDMARKS),
        changeable=False,
    )
    yolo_weights: str | None = setting(opt.YOLO_WEIGHTS, changeable=True)
    resize: str | None = setting(opt.RESIZE, changeable=False)
    preset: str = setting(
        opt.Option("--preset", "paper", "model preset", choices=PresetNames(), group="model"), changeable=False
    )
    model: str | None = setting(opt.MODEL, changeable=False)
    pretrained: bool = setting(
        opt.Option(
            "--pretrained",
            True,
            "start from pretrained weights (downloaded by name on first use); --no-pretrained: random init",
            switch=True,
            group="model",
        ),
        changeable=True,
    )
    text_model: str | None = setting(
        opt.Option(
            "--text-model",
            None,
            "where bert-base-uncased's vocabulary is (legacy token ids, the original system's checkpoints); for the "
            "paper/tiny/original presets also their BERT-family text encoder when --model is not given: a "
            "directory or a Hugging Face model id (downloaded on first use)",
            metavar="DIR|ID",
            group="model",
        ),
        changeable=True,
    )
    backbone_weights: str | None = setting(
        opt.Option(
            "--backbone-weights",
            None,
            "ResNet-50 weights (.pth or .safetensors; default: torchvision IMAGENET1K_V2)",
            type=opt.existing_file("backbone weights file"),
            metavar="FILE",
            group="model",
        ),
        changeable=True,
    )
    # The one-cycle peak (AdamW's own lr of 4e-4 is replaced by the schedule, as in the original system).
    lr: float = setting(
        opt.Option(
            "--lr",
            3e-4,
            "peak learning rate of the one-cycle schedule; on resume, the peak of the remaining schedule",
            type=opt.positive_float,
            group="optimisation",
        ),
        changeable=True,
    )
    weight_decay: float = setting(
        opt.Option("--weight-decay", 0.01, "AdamW weight decay", type=opt.non_negative_float, group="optimisation"),
        changeable=False,
    )
    output_dir: str = setting(
        opt.Option(
            "--output-dir",
            "checkpoints",
            "checkpoint folder (resume: default the checkpoint's folder)",
            type=opt.folder_to_write("output folder"),
            metavar="DIR",
            group="checkpoints",
        ),
        changeable=True,
    )
    seed: int = setting(
        opt.Option("--seed", 42, "seed for initialisation and data order", type=int, group="optimisation"),
        changeable=False,
    )
    device: str = setting(opt.DEVICE, changeable=True)
    num_workers: int = setting(opt.NUM_WORKERS, changeable=True)
    threads: int | None = setting(opt.THREADS, changeable=True)
    compile: bool = setting(
        opt.Option("--compile", False, "torch.compile the model", switch=True, group="system"), changeable=True
    )
    deterministic: bool = setting(
        opt.Option(
            "--deterministic",
            False,
            "deterministic kernels only, so a GPU resume is bit-exact too (slower)",
            switch=True,
            group="system",
        ),
        changeable=True,
    )
    save_every_steps: int = setting(
        opt.Option(
            "--save-every-steps",
            0,
            "also checkpoint every N optimizer steps inside an epoch (0: off)",
            type=opt.non_negative_int,
            group="checkpoints",
        ),
        changeable=True,
    )
    keep_last: int = setting(
        opt.Option(
            "--keep-last",
            0,
            "keep only the newest N periodic checkpoints (0: keep all; best and final are never pruned)",
            type=opt.non_negative_int,
            group="checkpoints",
        ),
        changeable=True,
    )
    stop_after_epochs: int | None = setting(
        opt.Option(
            "--stop-after-epochs",
            None,
            "stop (resumably) once this many epochs are complete, keeping the schedule of --epochs",
            type=opt.positive_int,
            group="checkpoints",
        ),
        changeable=True,
    )
    val_split: str = setting(
        opt.Option("--val-split", "val", "split used for validation", choices=SPLITS, group="evaluation"),
        changeable=False,
    )
    global_negatives: bool = setting(
        opt.Option(
            "--global-negatives",
            False,
            "distributed: contrast against the targets of every rank",
            switch=True,
            group="optimisation",
        ),
        changeable=False,
    )
    accumulate_negatives: bool = setting(
        opt.Option(
            "--accumulate-negatives",
            False,
            "InfoNCE over all micro-batches of an optimizer step (every target a negative), with the memory of "
            "one micro-batch: embeddings are cached without gradients, then each micro-batch is re-run",
            switch=True,
            group="optimisation",
        ),
        changeable=True,
    )
    # The model family's pretrained parts (optim.py): with either part LR, one AdamW group per part; without,
    # FashionVLP has one group as originally, and the CLIP presets keep both encoders frozen.
    backbone_lr: float | None = setting(
        opt.Option(
            "--backbone-lr",
            None,
            "peak learning rate of the image encoder (default: --lr; clip/clip4cir: frozen)",
            type=opt.positive_float,
            group="optimisation",
        ),
        changeable=False,
    )
    text_lr: float | None = setting(
        opt.Option(
            "--text-lr",
            None,
            "peak learning rate of the text encoder (default: --lr; clip/clip4cir: frozen)",
            type=opt.positive_float,
            group="optimisation",
        ),
        changeable=False,
    )

    def __post_init__(self) -> None:
        """Categories as a tuple (JSON gives a list); crop and landmark backends left unset take the preset's
        (the paper's model uses landmarks)."""
        if self.categories is not None:
            self.categories = tuple(self.categories)
        if self.crop is None or self.landmarks is None:
            preset = preset_config(self.preset).preprocess
            self.crop = self.crop or preset["crop"]
            self.landmarks = self.landmarks or preset["landmarks"]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["categories"] = list(self.categories) if self.categories is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _fields() -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(TrainConfig)


# Settings a resumed run may change; any other flag must equal the checkpoint's value.
CHANGEABLE = frozenset(f.name for f in _fields() if f.metadata["changeable"])


def add_train_arguments(parser: argparse.ArgumentParser, resume: bool) -> None:
    """The flags of `train`; for `resume`, every default is None so omitted flags can be told apart."""
    for f in _fields():
        option: opt.Option = f.metadata["option"]
        overrides: dict[str, Any] = {}
        if f.name in ("path_file", "path_folder"):
            overrides["required"] = True
        if resume:
            overrides["default"] = None
        option.add_to(parser, show_default=not resume, **overrides)


def explicit_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the user gave on the command line (resume parsers default every flag to None)."""
    known = {f.name for f in _fields()}
    return {k: v for k, v in vars(args).items() if v is not None and k in known}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(**explicit_settings(args))


def merge_resume_config(explicit: dict[str, Any], saved: dict[str, Any] | None) -> tuple[TrainConfig, list[str]]:
    """Explicit flags over the checkpoint's settings over defaults. Returns the config and the names of
    settings the user changed. A fixed setting given with another value is a user error."""
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
