#!/usr/bin/env python3
"""`python resume_training.py ...` is `fashionrec resume ...`: continue training from a checkpoint."""

import sys

from fashionrec.cli.main import main

sys.exit(main(["resume", *sys.argv[1:]]))
