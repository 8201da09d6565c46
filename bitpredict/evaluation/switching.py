"""The switching rule: the champion changes only on tested evidence, the same rule for every kind of model.

Why a rule and not the argmin: on any year of daily BTC the gaps between good methods are inside one HAC
standard error, so "the lowest score on the last window" picks noise and cycles (measured on 2024: ten
refits, ten different champions). Here the challenger is chosen on one span (the *selection* days) and must
then beat the incumbent on the next, disjoint span (the *confirmation* days, at least a year) by a one-sided
HAC Diebold–Mariano test at a stated size. A challenger chosen and confirmed on the same days would carry
its selection bias into the test.

* the **challenger** is the method with the lowest mean pinball on the selection days;
* the **incumbent** is the registry's champion; an empty registry's first champion is the pre-registered
  default (``promotion.default_champion``), never the argmin of one window;
* the challenger replaces the incumbent iff the confirmation span has at least ``min_days`` days and the
  one-sided HAC-DM p-value (challenger's pinball lower) is below ``pvalue``. Otherwise the incumbent stays
  (its parameters are refitted on the new data by the run — a refit is not a change of recipe).

Pure: daily loss series in, a decision with its test out (``decide`` in the backtest feeds it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bitpredict.evaluation import scores


def switching_rule(
    selection_losses: Mapping[str, np.ndarray],
    confirmation_losses: Mapping[str, np.ndarray],
    incumbent: str | None,
    default: str,
    pvalue: float,
    min_days: int,
) -> dict[str, Any]:
    """Decide the champion. ``*_losses``: method → daily mean pinball on that span (the same days per method).

    Returns ``champion`` (the method that serves after this decision), ``challenger``, ``incumbent``,
    ``switched``, ``test`` (statistic, one-sided p-value, days, size) and ``why`` in words.
    """
    candidates = [m for m in selection_losses if m in confirmation_losses]
    if not candidates:
        raise ValueError("no method is scored on both the selection and the confirmation days")
    selection_means = {m: float(np.mean(selection_losses[m])) for m in candidates}
    challenger = min(candidates, key=lambda m: selection_means[m])
    first = incumbent is None
    holder = (default if default in confirmation_losses else challenger) if first else incumbent
    days = len(next(iter(confirmation_losses.values())))
    out: dict[str, Any] = {
        "challenger": challenger,
        "incumbent": holder,
        "first_champion": first,
        "selection_scores": selection_means,
        "switched": False,
        "test": None,
    }
    if holder not in confirmation_losses:
        out.update(champion=holder, why=f"the champion {holder} was not scored on this window: kept, no test")
        return out
    if challenger == holder:
        out.update(champion=holder, why=f"{holder} is also the best on the selection days: kept (refitted)")
        return out
    statistic, p = scores.diebold_mariano(confirmation_losses[challenger], confirmation_losses[holder])
    out["test"] = {
        "name": "one-sided HAC Diebold-Mariano, mean pinball",
        "challenger": challenger,
        "against": holder,
        "statistic": statistic,
        "p_value": p,
        "size": pvalue,
        "days": days,
        "min_days": min_days,
        "challenger_score": float(np.mean(confirmation_losses[challenger])),
        "incumbent_score": float(np.mean(confirmation_losses[holder])),
    }
    enough = days >= min_days
    switched = enough and p < pvalue
    out["switched"] = switched
    role = "the default" if first else "the champion"
    if switched:
        why = (
            f"{challenger} (best on the selection days) beats {role} {holder} on {days} later days: "
            f"one-sided HAC-DM p = {p:.3g} < {pvalue}"
        )
    elif not enough:
        why = f"{role} {holder} kept: {days} confirmation days, the rule needs {min_days} (p = {p:.3g} not used)"
    else:
        why = (
            f"{role} {holder} kept: the challenger {challenger} is not better on {days} later days "
            f"(one-sided HAC-DM p = {p:.3g}, needs < {pvalue})"
        )
    out.update(champion=challenger if switched else holder, why=why)
    return out
