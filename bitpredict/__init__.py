"""BitPredict: Bitcoin price forecasting from market data, news and social sentiment.

The domain library. Every stage of the pipeline is one function here; the KFP components, the DVC
stages, the KServe transformer and the UI only wrap these functions. This package imports no kfp and
no kserve.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bitpredict")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
