"""The parser of every `fashionrec` command: a usage mistake is one line on stderr and exit code 2.

argparse's own parser prints its usage block before the error (26 lines for `train`), and reads a value
such as `-1e-3` or `-inf` as a flag, so `--lr -1e-3` was "expected one argument" instead of the value's
own check. Sub-commands made by `add_subparsers` are of the same class."""

from __future__ import annotations

import argparse
import re
from typing import NoReturn

# Text that reads as a number is a value, not a flag (argparse knows only -5 and -.5).
NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


class CommandParser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NUMBER

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}\n")
