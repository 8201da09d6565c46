"""Features: everything a model sees for day *t*, built from data known at the close of *t*.

``indicators`` (TA-Lib), ``sentiment`` (VADER, FinBERT), ``merge`` (the features table), ``online`` (the one
feature function that training and the serving transformer share) and ``columns`` (which columns exist).
Imports data, never forecast or anything above it.
"""
