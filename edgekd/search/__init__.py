"""``edgekd search``: the most accurate student that fits a device budget.

:mod:`~edgekd.search.budget` (the budget string), :mod:`~edgekd.search.space` (the candidates),
:mod:`~edgekd.search.measure` (a candidate's figures before training), :mod:`~edgekd.search.run`
(the Optuna study, trials, workers, finalists) and :mod:`~edgekd.search.report` (the Pareto front).
Nothing heavy is imported here: Optuna and torch load inside the functions that use them.
"""

from __future__ import annotations

from typing import Any


def search(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See :func:`edgekd.search.run.search`."""
    from edgekd.search.run import search as run_search

    return run_search(*args, **kwargs)
