"""BitPredict: Bitcoin price forecasting from market data, news and social sentiment.

The domain library. Every stage of the pipeline is one function here; the KFP components, the DVC
stages, the KServe transformer and the UI only wrap these functions. This package imports no kfp and
no kserve.

Its packages read as the flow, and imports point one way (``tests/unit/test_imports.py`` holds it):

* the core — ``config``, ``errors``, ``log``, ``runtime``, ``storage``, ``docs_blocks`` — and below every stage
  ``pipeline/`` (artifact paths and ``dvc.yaml``, the run lock, MLflow wiring);
* ``data/`` → ``features/`` → ``forecast/`` → ``evaluation/`` → ``operations/``: sources and clean bars, the
  features table, the models and their contract, the walk-forward evaluation, then registry, publishing,
  monitoring and replay;
* above them ``orchestration/`` (a stage on KFP artifacts, the pipeline's parameters) and ``cli``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bitpredict")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
