"""Command-line options shared by several commands, each defined once: its flag, default, help and check.

`train`'s settings (`fashionrec.train.params.TrainConfig`) reuse these specs for their fields, and
`evaluate`, `index`, `recommend`, `serve` and `dataset-info` add the same specs to their parsers, so a
flag is spelled, defaulted and validated the same way everywhere."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fashionrec.data.preprocess_config import CROPS, LANDMARKS, RESIZES
from fashionrec.errors import UserError

DEFAULT_CACHE_DIR = "cache"
DEFAULT_DEVICE = "auto"  # this process's GPU when CUDA works, else the CPU


def _number(cast: Callable[[str], Any], text: str) -> Any:
    try:
        value = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive_int(text: str) -> int:
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    value = _number(float, text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(float, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of 0 or more, got {text}")
    return value


def category_list(text: str) -> tuple[str, ...]:
    """ "dress,shirt" -> ("dress", "shirt"); which names exist depends on the annotation layout, so
    `fashionrec.data.fashioniq.load_split` checks them against the files."""
    from fashionrec.data.fashioniq import parse_categories

    try:
        return tuple(parse_categories(text))
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


@dataclass(frozen=True)
class Option:
    """One flag: `add_to` puts it on a parser. `default` is also the dataclass default of the setting."""

    flag: str
    default: Any = None
    help: str = ""
    type: Callable[[str], Any] | None = None
    choices: Sequence[str] | None = None
    switch: bool = False  # a --flag/--no-flag boolean
    metavar: str | None = None
    hidden_aliases: tuple[str, ...] = ()  # old spellings kept working, not shown in --help

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def with_default(self, default: Any) -> Option:
        return replace(self, default=default)

    def add_to(self, parser: argparse.ArgumentParser, *, show_default: bool = True, **overrides: Any) -> None:
        """`overrides` replace argparse keywords (e.g. default=None for resume, required=True)."""
        kw: dict[str, Any] = {"dest": self.dest, "default": self.default}
        if self.switch:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw.update({k: v for k, v in (("type", self.type), ("choices", self.choices)) if v is not None})
            if self.metavar:
                kw["metavar"] = self.metavar
        kw.update(overrides)
        text = self.help
        if show_default and kw.get("default") not in (None, False, "") and not self.switch:
            text += f" (default: {_show(kw['default'])})"
        parser.add_argument(self.flag, help=text, **kw)
        if self.hidden_aliases:
            parser.add_argument(*self.hidden_aliases, help=argparse.SUPPRESS, **{**kw, "required": False})


def _show(value: Any) -> str:
    return ",".join(value) if isinstance(value, tuple) else str(value)


# ---- data -----------------------------------------------------------------------------------------------
PATH_FILE = Option(
    "--path-file",
    help="annotations folder: captions/ and image_splits/ (FashionIQ), or train.json/val.json (original system)",
    metavar="DIR",
)
PATH_FOLDER = Option("--path-folder", help="images folder: <id>.jpg|png|jpeg|webp", metavar="DIR")
CATEGORIES = Option(
    "--categories",
    help="comma-separated categories, e.g. dress,shirt (default: every category the annotations have)",
    type=category_list,
    metavar="LIST",
)
SKIP_MISSING = Option(
    "--skip-missing", default=False, switch=True, help="drop queries whose images are absent instead of failing"
)
VOCAB = Option(
    "--text-model",
    help="where bert-base-uncased's vocab.txt is, for the original system's token ids and checkpoints: a folder "
    "or a Hugging Face id (default: the Hugging Face cache, else downloaded)",
)
# The one pretrained model a preset starts from; --text-model keeps its own meaning (the vocabulary above), and
# for the FashionVLP presets, which take their vocabulary from their text encoder, it still names that encoder
# when --model is not given.
MODEL = Option(
    "--model",
    help="the pretrained model to start from, as the preset reads it: clip/clip4cir: an open_clip name with its "
    "pretrained tag (RN50x4/openai, ViT-B-32/laion2b_s34b_b79k), a CLIP or SigLIP Hugging Face id or "
    "save_pretrained folder, or a fashionrec model of the preset's family; paper/tiny/original: the BERT-family "
    "text encoder (default: --text-model, else the preset's)",
    metavar="NAME",
)
CACHE_DIR = Option("--cache-dir", default=DEFAULT_CACHE_DIR, help="preprocessing cache folder", metavar="DIR")

# ---- compute --------------------------------------------------------------------------------------------
DEVICE = Option("--device", default=DEFAULT_DEVICE, help="auto, cpu, cuda or cuda:N")
BATCH = Option(
    "--batch",
    default=64,
    type=positive_int,
    help="batch size (training: the micro-batch)",
    hidden_aliases=("--batch-size",),
)
NUM_WORKERS = Option("--num-workers", default=2, type=non_negative_int, help="data loader worker processes")
THREADS = Option(
    "--threads",
    type=positive_int,
    help="CPU threads for torch (default: torch's own choice; a CPU run is bit-exact only with the same count)",
)

# ---- preprocessing --------------------------------------------------------------------------------------
CROP = Option("--crop", choices=CROPS, help="clothing crop backend")
LANDMARKS = Option("--landmarks", choices=LANDMARKS, help="landmark backend")
RESIZE = Option(
    "--resize",
    choices=RESIZES,
    help="how a picture becomes the square input: square (whole picture resized), shortest (shortest side resized, "
    "centre kept: CLIP), targetpad (padded to a 1.25 aspect ratio first: CLIP4Cir) (default: the model's own)",
)
YOLO_WEIGHTS = Option("--yolo-weights", help="ultralytics weights file for --crop yolo", metavar="FILE")


def add_options(parser: argparse.ArgumentParser, *options: Option, **overrides: Any) -> None:
    for option in options:
        option.add_to(parser, **overrides)


def add_dataset_options(parser: argparse.ArgumentParser, *, skip_missing: bool = True) -> None:
    """--path-file, --path-folder, --categories and (unless `skip_missing` is False) --skip-missing."""
    PATH_FILE.add_to(parser, required=True)
    PATH_FOLDER.add_to(parser, required=True)
    CATEGORIES.add_to(parser)
    if skip_missing:
        SKIP_MISSING.add_to(parser)
