"""The run's record in the output folder: `training_log.jsonl` (one JSON object per event, appended and
fsynced) and `training_curves.png` (loss and Recall@10/50 per epoch), rewritten atomically each epoch."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from fashionrec.atomic import atomic_write

LOG_NAME = "training_log.jsonl"
PLOT_NAME = "training_curves.png"


class RunLog:
    def __init__(self, output_dir: str | Path, enabled: bool = True):
        self.dir = Path(output_dir)
        self.enabled = enabled

    def event(self, kind: str, **fields: Any) -> None:
        if not self.enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"event": kind, "time": time.time(), **fields}, sort_keys=True)
        with open(self.dir / LOG_NAME, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def plot(self, train_losses: list[float], recalls_10: list[float], recalls_50: list[float]) -> None:
        if not self.enabled or not train_losses:
            return
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        epochs = range(1, len(train_losses) + 1)
        fig = Figure(figsize=(9, 3.5), dpi=100)
        ax_loss, ax_recall = fig.subplots(1, 2)
        ax_loss.plot(epochs, train_losses, marker="o")
        ax_loss.set(title="training loss", xlabel="epoch")
        ax_recall.plot(epochs, [100 * r for r in recalls_10], marker="o", label="R@10")
        ax_recall.plot(epochs, [100 * r for r in recalls_50], marker="o", label="R@50")
        ax_recall.set(title="validation recall (%)", xlabel="epoch")
        ax_recall.legend()
        # Fixed margins: tight_layout draws the figure once more to measure it, doubling the cost of every epoch's plot.
        fig.subplots_adjust(left=0.07, right=0.98, bottom=0.14, top=0.9, wspace=0.2)
        atomic_write(self.dir / PLOT_NAME, lambda f: fig.savefig(f, format="png"))
