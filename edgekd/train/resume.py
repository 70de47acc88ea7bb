"""A stage's ``<name>_last.pt`` read back for ``--resume``: its ``train_state`` checked like the rest
of a checkpoint before anything of it is used.

The trainer writes ``train_state`` after every epoch; a file that holds anything it could not have
written (a wrong type, a missing key, an epoch outside the recipe, a non-finite number, optimizer
or method state of another model) is ``corrupt checkpoint PATH: …``, one line. Unchecked, such a
file gave tracebacks deep in torch, or a run that reported epochs it never trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.checkpoint import load_checkpoint, load_weights
from edgekd.config import non_plain
from edgekd.errors import CheckpointError, one_line
from edgekd.limits import check_number, is_finite_number, is_number
from edgekd.tensorfile import is_finite_tensor

# what the trainer writes; ``lookahead`` too when the recipe has one (checked where it is loaded)
KEYS = ("optimizer", "method", "scaler", "epoch", "best_val", "best_epoch", "wall_s", "history")
# what loading a state that does not fit raises, inside torch or our own load_state_dict methods
LOAD_ERRORS = (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError)


@dataclass
class Progress:
    """Where the interrupted stage stood after its last finished epoch."""

    epoch: int = 0  # epochs done
    best_val: float = -1.0  # best val score so far (-1 before any)
    best_epoch: int = -1  # its epoch (-1 before any)
    wall_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per epoch done


def restore(
    path: Path,
    epochs: int,
    model: nn.Module,
    method: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    lookahead: Any = None,
) -> Progress:
    """Load ``path``'s weights and training state into the stage's objects; ``epochs``: the recipe's."""
    last = load_checkpoint(path)
    state = last.get("train_state")
    if state is None:
        raise CheckpointError(f"{path} has no training state to resume from")

    def corrupt(why: str) -> CheckpointError:
        return CheckpointError(f"corrupt checkpoint {path}: {why}")

    if not isinstance(state, dict):
        raise corrupt(f"train_state is a {type(state).__name__}, not a mapping")
    missing = [key for key in KEYS if key not in state]
    if missing:
        raise corrupt(f"train_state lacks {', '.join(missing)}")

    def number(key: str, **bounds: Any) -> Any:
        return check_number(
            f"corrupt checkpoint {path}: train_state.{key}", state[key], error=CheckpointError, **bounds
        )

    epoch = number("epoch", integer=True, low=0, high=epochs, why="the recipe's epochs")
    progress = Progress(
        epoch=epoch,
        best_val=float(number("best_val", low=-1, high=1)),  # a val score (a fraction), -1 before any
        best_epoch=number("best_epoch", integer=True, low=-1, high=epoch),
        wall_s=float(number("wall_s", low=0)),
        history=state["history"],  # checked next
    )
    history = progress.history
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        raise corrupt("train_state.history is not a list of epoch records")
    if len(history) != epoch:  # one record per epoch: the summary's epoch count is its length
        raise corrupt(f"train_state.history has {len(history)} records for {epoch} epochs")
    bad = non_plain(history, "train_state.history")
    if bad is not None:  # the records go to metrics and summary JSON, which is strict
        raise corrupt(bad)

    load_weights(model, last["state_dict"], path)
    _load(corrupt, "method", method.load_state_dict, state["method"])
    _load_optimizer(corrupt, optimizer, state["optimizer"])
    scaler_state = state["scaler"]
    if not isinstance(scaler_state, dict) or non_plain(scaler_state) is not None:
        raise corrupt("train_state.scaler is not a mapping of finite numbers")
    _load(corrupt, "scaler", scaler.load_state_dict, scaler_state)
    if lookahead is not None and state.get("lookahead") is not None:
        _load_lookahead(corrupt, lookahead, state["lookahead"])
    return progress


def _load(corrupt, what: str, load, saved: Any) -> None:
    try:
        load(saved)
    except LOAD_ERRORS as exc:
        # torch's first line can be a bare heading ("Error(s) in loading state_dict for …:"): all of it, on one line
        raise corrupt(f"its {what} state does not fit this run ({one_line(str(exc))[:200]})") from None


def _load_optimizer(corrupt, optimizer: torch.optim.Optimizer, saved: Any) -> None:
    """Loaded, then checked: torch checks only the number of groups and parameters, so another
    model's state with as many tensors loads and fails at the first step, deep in the optimizer."""
    fresh = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    _load(corrupt, "optimizer", optimizer.load_state_dict, saved)
    for i, (group, want) in enumerate(zip(optimizer.param_groups, fresh)):
        for key, value in group.items():
            if key == "params":
                continue
            bad = non_plain(value, f"optimizer group {i} {key}")
            if bad is None and is_number(want.get(key)) and not is_number(value):
                bad = f"optimizer group {i} {key}: {value!r} is not a number"
            if bad is not None:
                raise corrupt(bad)
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if not isinstance(value, torch.Tensor):  # a step count from an older torch, an unset buffer
                    if value is not None and not is_finite_number(value):
                        raise corrupt(f"optimizer state {key} is {value!r}, not a tensor or a finite number")
                    continue
                if value.dim() and value.shape != p.shape:
                    raise corrupt(
                        f"optimizer state {key} has shape {list(value.shape)} for a parameter of shape "
                        f"{list(p.shape)}: it is another model's"
                    )
                if not is_finite_tensor(value):
                    raise corrupt(f"optimizer state {key} holds non-finite values")


def _load_lookahead(corrupt, lookahead: Any, saved: Any) -> None:
    slow = saved.get("slow") if isinstance(saved, dict) else None
    steps = saved.get("steps") if isinstance(saved, dict) else None
    fits = (
        isinstance(slow, list)
        # all its slow tensors, or (a run saved before the buffers were averaged) the parameters'
        and len(slow) in (len(lookahead.slow), lookahead.num_params)
        and all(isinstance(s, torch.Tensor) and s.shape == t.shape for s, t in zip(slow, lookahead.slow))
    )
    if not fits or isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise corrupt("its lookahead state does not fit this run (slow weights of other shapes, or no step count)")
    lookahead.load_state_dict(saved)
