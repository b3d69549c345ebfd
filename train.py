#!/usr/bin/env python3
"""`python train.py ...` is `fashionrec train ...`."""

import sys

from fashionrec.cli.main import main

sys.exit(main(["train", *sys.argv[1:]]))
