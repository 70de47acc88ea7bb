"""Optional TensorBoard scalars for a distill run (``log.tensorboard: true``): every numeric field of
each epoch's record (loss and the KD method's parts, train and val accuracy, lr, speed) under
``<stage>/<field>`` at step = epoch, in ``RUN/tensorboard/``. ``metrics.jsonl`` stays the record;
these files are a view of it (``tensorboard --logdir RUN/tensorboard``).

Written with tensorboardX (the tensorboard extra), not ``torch.utils.tensorboard``: that one goes
through the tensorboard package, which imports TensorFlow when it is installed (the export extra
installs it), and TensorFlow loaded beside torch in one process crashed the next torch call.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from edgekd.errors import ConfigError

FOLDER = "tensorboard"


def require_tensorboard() -> None:
    """Fail before training when the writer cannot be made (a config error, not a late crash)."""
    try:
        from tensorboardX import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError("config: log.tensorboard needs tensorboardX (pip install 'edgekd[tensorboard]')") from None


class TensorBoardLog:
    """An epoch callback (see :data:`edgekd.train.trainer.EpochCallback`) writing scalars."""

    def __init__(self, run_dir: Path) -> None:
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(Path(run_dir) / FOLDER))

    def __call__(self, record: dict[str, Any], history: list[dict[str, Any]]) -> None:
        from edgekd.train.distributed import world

        if not world().main:  # every rank holds the same all-reduced record; one writes it
            return
        stage, step = record["stage"], int(record["epoch"])
        for key, value in record.items():
            if (
                key in ("stage", "epoch")
                or isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                continue
            self.writer.add_scalar(f"{stage}/{key}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
