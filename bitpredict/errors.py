"""The root of every error BitPredict raises on purpose.

Why one root: a caller (the CLI, a KFP component, the UI) can tell "BitPredict refused this, and the message
says why" from a bug, and show the first as one line without a traceback, by catching one class. Each error
keeps its second base (``ValueError`` for bad input, ``RuntimeError`` for a state the run cannot go on from)
where callers already catch that.

This module imports nothing, so every module — settings and storage included — can use it.
"""

from __future__ import annotations


class BitPredictError(Exception):
    """An expected failure with a message for a person: bad input or settings, a source, the store, a run."""


class InputError(BitPredictError, ValueError):
    """The user's data or settings cannot give a stage its result (nothing ingested yet, too little history,
    a table that breaks its contract); the message says what to run or change. A ``ValueError`` too, for
    callers that catch bad input that way."""
