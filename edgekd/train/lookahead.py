"""Lookahead (Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back"), as airbench uses it.

The inner optimizer takes k fast steps; then the slow weights move a fraction α towards the fast
ones, φ ← φ + α·(θ − φ), and the fast weights restart from them, θ ← φ. At the end of every epoch
the model takes the slow weights (:meth:`sync`): they are what is evaluated and saved, and the
next epoch starts from them, as in airbench. With a ramp p > 0, α is 1 (no averaging) at the start
and reaches its set value at the end of training, α_t = 1 − (1 − α)·(t/T)^p: airbench's schedule
(its EMA decay 0.95⁵·(t/T)³ is 1 − α_t with α = 1 − 0.95⁵), fast early, strongly averaged late.
The float buffers passed beside the parameters (BatchNorm's running statistics) are averaged the
same way, as airbench's EMA of the whole state_dict does: statistics gathered under the fast
weights would not describe the slow ones the model ends with. It wraps no optimizer
class: it runs as the optimizer's step post-hook, so the trainer's lr schedule, GradScaler and
state_dict handling of the inner optimizer are unchanged; its own state (the slow weights and the
step count) is saved beside it for an exact resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class Lookahead:
    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        params: Sequence[torch.nn.Parameter],
        k: int,
        alpha: float,
        ramp: float = 0.0,
        total_steps: int = 0,
        buffers: Sequence[torch.Tensor] = (),
    ) -> None:
        if k < 1 or not 0.0 < alpha <= 1.0:
            raise ValueError(f"lookahead needs k ≥ 1 and α in (0, 1], got k={k}, α={alpha}")
        if ramp < 0 or (ramp > 0 and total_steps < 1):
            raise ValueError(f"lookahead's ramp needs p ≥ 0 and the run's total steps, got p={ramp}, {total_steps}")
        self.num_params = len(params)
        self.params = [*params, *buffers]  # every tensor averaged: the weights, then the float buffers
        self.k, self.alpha = k, alpha
        self.ramp, self.total_steps = ramp, total_steps
        self.slow = [p.detach().clone() for p in self.params]  # φ₀ = θ₀
        self.steps = 0
        self._handle = optimizer.register_step_post_hook(lambda *_: self.after_step())

    @torch.no_grad()
    def after_step(self) -> None:
        self.steps += 1
        if self.steps % self.k:
            return
        alpha = self.alpha_at(self.steps)
        for slow, p in zip(self.slow, self.params):
            slow.add_(p.detach() - slow, alpha=alpha)
            p.copy_(slow)

    def alpha_at(self, step: int) -> float:
        """α of the slow update after optimizer step ``step``."""
        if not self.ramp:
            return self.alpha
        return 1.0 - (1.0 - self.alpha) * min(1.0, step / self.total_steps) ** self.ramp

    @torch.no_grad()
    def sync(self) -> None:
        """The model takes the slow weights (end of an epoch): what is evaluated and saved."""
        for slow, p in zip(self.slow, self.params):
            p.copy_(slow)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "slow": [s.clone() for s in self.slow]}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """``state`` may hold the parameters' slow weights alone (a run saved before the buffers
        were averaged): the buffers' then start from the model's, as at the start of a run."""
        self.steps = int(state["steps"])
        saved = list(state["slow"])
        for i, slow in enumerate(self.slow):
            slow.copy_(saved[i] if i < len(saved) else self.params[i].detach())
