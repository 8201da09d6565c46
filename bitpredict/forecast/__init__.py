"""Forecast: the models and their contract.

``network`` (the Keras LSTM with attention), ``baselines`` (EWMA, empirical, GARCH-t, HAR, each a model), ``dataset``
(windows and scaling), ``train`` (fit and export a candidate), ``artifact`` (the SavedModel contract every consumer
reads) and ``serving`` (a request → model inputs → quantiles), ``quantiles`` (the levels and the quantile function
between them). Imports features and data; knows nothing of evaluation or operations.
"""
