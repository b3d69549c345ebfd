"""Command-line options shared by several commands, each defined once: its flag, default, help, check and
help group.

`train`'s settings (`fashionrec.train.params.TrainConfig`) reuse these specs for their fields, and
`evaluate`, `index`, `recommend`, `serve` and `dataset-info` add the same specs to their parsers, so a
flag is spelled, defaulted and validated the same way everywhere.

Every check a value allows is made here, at parse time, by the option's `type`: numbers and their ranges,
ports, and paths (a folder that must exist, a file, a folder to write into; `fashionrec.paths` words the
messages). This module imports only the standard library, so a wrong value is reported before torch loads.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fashionrec import paths
from fashionrec.data.preprocess_config import CROPS, LANDMARKS, RESIZES
from fashionrec.errors import UserError

DEFAULT_CACHE_DIR = "cache"
DEFAULT_DEVICE = "auto"  # this process's GPU when CUDA works, else the CPU
DATABASE_URL_ENV = "FASHIONREC_DATABASE_URL"  # a catalog database, for commands given no catalog location
# The limits of one query, checked at parse time by `recommend` and per request by the server.
MAX_K = 100  # the most results
MAX_TEXT_CHARS = 500  # the longest feedback text
# Help groups, in the order `--help` lists them; an option names its group (`Option.group`).
GROUPS = ("data", "model", "optimisation", "checkpoints", "evaluation", "system")


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


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise UserError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    return k


def check_feedback_text(text: str) -> str:
    """The text stripped, or a UserError when it is empty or too long."""
    text = text.strip()
    if not text:
        raise UserError("the feedback text is empty; say what should change, e.g. 'is red with long sleeves'")
    if len(text) > MAX_TEXT_CHARS:
        raise UserError(f"the feedback text has {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
    return text


def results_count(text: str) -> int:
    return _as_argument_error(check_k, _number(int, text))


def feedback_text(text: str) -> str:
    _as_argument_error(check_feedback_text, text)
    return text


def _as_argument_error(check: Callable[..., Any], *args: Any) -> Any:
    try:
        return check(*args)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def port_number(text: str) -> int:
    value = _number(int, text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535 (or 0: any free port), got {value}")
    return value


def _path_check(check: Callable[[str, str], Path], what: str) -> Callable[[str], str]:
    """A `type` that runs a `fashionrec.paths` check and returns the text as given (settings stay plain
    strings, as checkpoints store them)."""

    def parse(text: str) -> str:
        _as_argument_error(check, text, what)
        return text

    return parse


def existing_folder(what: str) -> Callable[[str], str]:
    """`what` names the folder in messages: "annotations folder not found: X"."""
    return _path_check(paths.existing_folder, what)


def existing_file(what: str) -> Callable[[str], str]:
    return _path_check(paths.existing_file, what)


def existing(what: str) -> Callable[[str], str]:
    """A file or a folder."""
    return _path_check(paths.existing, what)


def checkpoint_file_or_folder(what: str) -> Callable[[str], str]:
    """A checkpoint file, or a folder holding `*.pt` checkpoints."""
    return _path_check(paths.checkpoint_file_or_folder, what)


def folder_to_write(what: str) -> Callable[[str], str]:
    """A folder that exists or can be made (nothing on its way is a file)."""
    return _path_check(paths.folder_to_write, what)


def new_file(what: str) -> Callable[[str], str]:
    """A file that does not exist yet."""
    return _path_check(paths.new_path, what)


def catalog_location(check: Callable[[str], str]) -> Callable[[str], str]:
    """A catalog's location: a folder, checked by `check`, or a URL of a registered store (the scheme and
    the port checked here; the database itself when the store opens it). Passwords are never shown."""

    def parse(text: str) -> str:
        from fashionrec.index.registry import check_url, is_url  # no store, no torch

        return _as_argument_error(check_url, text) if is_url(text) else check(text)

    return parse


def catalog_name(text: str) -> str:
    from fashionrec.index.postgres.names import check_name  # no database client, no torch

    return _as_argument_error(check_name, text)


def category_list(text: str) -> tuple[str, ...]:
    """ "dress,shirt" -> ("dress", "shirt"); which names exist depends on the annotation layout, so
    `fashionrec.data.fashioniq.load_split` checks them against the files."""
    from fashionrec.data.fashioniq import parse_categories

    try:
        return tuple(parse_categories(text))
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class OldSpelling(argparse.Action):
    """An old spelling of a flag (`Option.hidden_aliases`): it still works, with a one-line note."""

    def __init__(self, *args: Any, current: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.current = current

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: Any = None
    ) -> None:
        print(f"note: {option_string} is the old spelling of {self.current}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def option_group(parser: argparse.ArgumentParser, name: str) -> argparse._ArgumentGroup:
    """The parser's help group `name`. All of GROUPS are made at the first call, so `--help` lists them in
    that order whatever order the options come in (argparse does not show empty groups)."""
    groups = vars(parser).setdefault("_fashionrec_groups", {})
    if not groups:
        groups.update((title, parser.add_argument_group(title)) for title in GROUPS)
    return groups[name]


def readable_file(text: str) -> Path:
    """A file that exists, as a Path: for files a command reads itself (products CSV, images, key files)."""
    return Path(existing_file("file")(text))


def price(text: str) -> str:
    from fashionrec.index.items import parse_price

    return _as_argument_error(parse_price, text)


def product_url(text: str) -> str:
    from fashionrec.index.items import check_url

    return _as_argument_error(check_url, text)


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
    hidden_aliases: tuple[str, ...] = ()  # old spellings: they work, print a note, and are not in --help
    group: str | None = None  # one of GROUPS: where --help lists it (None: with the command's other options)
    shown_default: str | None = None  # what --help says the default is, when it is not `default` itself

    def __post_init__(self) -> None:
        if self.group is not None and self.group not in GROUPS:
            raise ValueError(f"{self.flag}: unknown help group {self.group!r}")
        if self.switch and self.hidden_aliases:
            raise ValueError(f"{self.flag}: a switch cannot have old spellings")

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def with_default(self, default: Any) -> Option:
        return replace(self, default=default, shown_default=None)

    def with_help(self, help: str) -> Option:
        return replace(self, help=help)

    def add_to(self, parser: argparse.ArgumentParser, *, show_default: bool = True, **overrides: Any) -> None:
        """`overrides` replace argparse keywords (e.g. default=None for resume, required=True)."""
        kw: dict[str, Any] = {"dest": self.dest, "default": self.default}
        if self.switch:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw.update({k: v for k, v in (("type", self.type), ("choices", self.choices)) if v is not None})
            metavar = self.metavar or _NUMBER_METAVARS.get(self.type)
            if metavar:
                kw["metavar"] = metavar
        kw.update(overrides)
        text = self.help
        if show_default and self.shown_default:
            text += f" (default: {self.shown_default})"
        elif show_default and not kw.get("required"):
            text += _default_text(kw.get("default"), self.switch)
        target = option_group(parser, self.group) if self.group else parser
        target.add_argument(self.flag, help=text, **kw)
        if self.hidden_aliases:
            target.add_argument(
                *self.hidden_aliases, help=argparse.SUPPRESS, action=OldSpelling, current=self.flag,
                **{**kw, "required": False},
            )  # fmt: skip


_NUMBER_METAVARS: dict[Any, str] = {
    int: "N", positive_int: "N", non_negative_int: "N", positive_float: "X", non_negative_float: "X"
}  # fmt: skip


def _default_text(default: Any, switch: bool) -> str:
    if switch:
        return " (default: on)" if default else " (default: off)"
    if default in (None, False, ""):
        return ""
    return f" (default: {','.join(default) if isinstance(default, tuple) else default})"


# ---- data -----------------------------------------------------------------------------------------------
PATH_FILE = Option(
    "--path-file",
    help="annotations folder: captions/ and image_splits/ (FashionIQ), or train.json/val.json (original system)",
    type=existing_folder("annotations folder"),
    metavar="DIR",
    group="data",
)
PATH_FOLDER = Option(
    "--path-folder",
    help="images folder: <id>.jpg|png|jpeg|webp",
    type=existing_folder("images folder"),
    metavar="DIR",
    group="data",
)
CATEGORIES = Option(
    "--categories",
    help="comma-separated categories, e.g. dress,shirt (default: every category the annotations have)",
    type=category_list,
    metavar="LIST",
    group="data",
)
SKIP_MISSING = Option(
    "--skip-missing",
    default=False,
    switch=True,
    help="drop queries whose images are absent instead of failing",
    group="data",
)
VOCAB = Option(
    "--text-model",
    help="where bert-base-uncased's vocab.txt is, for the original system's token ids and checkpoints: a folder "
    "or a Hugging Face id (default: the Hugging Face cache, else downloaded)",
    metavar="DIR|ID",
    group="data",
)
CACHE_DIR = Option(
    "--cache-dir",
    default=DEFAULT_CACHE_DIR,
    help="preprocessing cache folder",
    type=folder_to_write("cache folder"),
    metavar="DIR",
    group="data",
)
IMAGES = Option(
    "--images",
    help="catalog folder (jpg/jpeg/png/webp, recursive)",
    type=existing_folder("images folder"),
    metavar="DIR",
    group="data",
)

# ---- checkpoints and indexes ----------------------------------------------------------------------------
CHECKPOINT = Option(
    "--checkpoint",
    help="training checkpoint (.pt) or model directory",
    type=existing("checkpoint"),
    metavar="PATH",
    group="checkpoints",
)
INDEX = Option(
    "--index",
    help=f"index folder from `fashionrec index`, or a catalog database URL (postgresql://...; default: "
    f"--database-dir, else ${DATABASE_URL_ENV})",
    type=catalog_location(existing_folder("index folder")),
    metavar="DIR",
    group="data",
)

# ---- catalog stores -------------------------------------------------------------------------------------
CATALOG_NAME = Option(
    "--catalog-name",
    type=catalog_name,
    metavar="NAME",
    help="which catalog of the database: its set of tables, so one database holds several "
    "(lower-case letters, digits, _; default: fashionrec)",
    group="data",
)
DATABASE_DIR = Option(
    "--database-dir",
    type=folder_to_write("database folder"),
    metavar="DIR",
    help="the catalog is in an embedded PostgreSQL in DIR (created on first use), for one machine: "
    "started if no process runs it, stopped when the last fashionrec process using it ends",
    group="data",
)
QDRANT_API_KEY_FILE = Option(
    "--qdrant-api-key-file",
    type=readable_file,
    metavar="FILE",
    help="file holding the Qdrant API key (default: $QDRANT_API_KEY); never written into the index",
    group="system",
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
    group="model",
)

# ---- compute --------------------------------------------------------------------------------------------
DEVICE = Option("--device", default=DEFAULT_DEVICE, help="auto, cpu, cuda or cuda:N", group="system")
BATCH = Option(
    "--batch",
    default=64,
    type=positive_int,
    help="batch size (training: the micro-batch)",
    hidden_aliases=("--batch-size",),
    group="optimisation",
)
NUM_WORKERS = Option(
    "--num-workers", default=2, type=non_negative_int, help="data loader worker processes", group="system"
)
THREADS = Option(
    "--threads",
    type=positive_int,
    help="CPU threads for torch (a CPU run is bit-exact only with the same count)",
    shown_default="torch's own choice",
    group="system",
)

# ---- preprocessing --------------------------------------------------------------------------------------
CROP = Option("--crop", choices=CROPS, help="clothing crop backend", group="data")
LANDMARKS = Option(
    "--landmarks",
    choices=LANDMARKS,
    help="landmark backend (original: the original system's)",
    group="data",
)
RESIZE = Option(
    "--resize",
    choices=RESIZES,
    help="how a picture becomes the square input: square (whole picture resized), shortest (shortest side resized, "
    "centre kept: CLIP), targetpad (padded to a 1.25 aspect ratio first: CLIP4Cir) (default: the model's own)",
    group="data",
)
YOLO_WEIGHTS = Option(
    "--yolo-weights",
    help="ultralytics weights file for --crop yolo",
    type=existing_file("YOLO weights file"),
    metavar="FILE",
    group="data",
)

# ---- serving --------------------------------------------------------------------------------------------
HOST = Option("--host", default="127.0.0.1", help="address to listen on", group="system")
PORT = Option("--port", default=8000, type=port_number, help="port to listen on (0: any free port)", group="system")


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
