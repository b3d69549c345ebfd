#!/usr/bin/env python3
"""`python test_resume.py`: the resume tests (exactness, SIGKILL, flags, changed settings and schedules,
checkpoints, OOM).
Extra arguments go to pytest, e.g. `python test_resume.py -x -k sigkill`."""

import sys
from pathlib import Path

import pytest

here = Path(__file__).resolve().parent
tests = [
    "test_resume.py",
    "test_resume_flags.py",
    "test_resume_settings.py",
    "test_resume_plan.py",
    "test_resume_continuation.py",
    "test_checkpoint.py",
    "test_oom.py",
    "test_resume_script.py",
]
sys.exit(pytest.main([*(str(here / "tests" / "train" / t) for t in tests), "-q", *sys.argv[1:]]))
