"""Evaluation: how good a forecast was, on days the model never saw.

``scores`` (pinball, coverage, the Diebold–Mariano test), ``coverage`` (Kupiec and Christoffersen tests per tail),
``sequential`` (the monitor's CUSUM and rolling exceedance alarms), ``calibration`` (adaptive conformal inference per
tail), ``backtest`` (walk-forward measurement of every method), ``report`` (tables and plots of a backtest),
``evaluate`` (the stage: backtest → report → files and MLflow) and ``ablation``. The stage sits above its measurement
and its report, so neither imports it.
"""
