"""torchrun entry point for the tests: run `python -m fashionrec ARGS` as this rank's child process and write
its exit status to `DIR/rank<RANK>.exit`. torchrun reports no worker exit codes once it was signalled
itself, so this is how a test reads every rank's own status.

Usage: `torchrun ... rank_exit_status.py DIR ARGS...`. Standard library only: it starts in milliseconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def main() -> int:
    folder, args = Path(sys.argv[1]), sys.argv[2:]
    child = subprocess.Popen([sys.executable, "-m", "fashionrec", *args])
    # torchrun signals a worker's whole process group, so the child receives SIGTERM itself; this process
    # only waits for it (ignoring signals once the child has started, so the child keeps its defaults).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    code = child.wait()
    (folder / f"rank{os.environ['RANK']}.exit").write_text(str(code))
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    raise SystemExit(main())
