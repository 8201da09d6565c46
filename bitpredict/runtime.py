"""Process set-up shared by every stage and server: TensorFlow told to be quiet before it is imported.

Why: on a CPU machine TensorFlow prints a screenful at import — CUDA libraries not found, oneDNN custom
operations, cuInit errors — that buries the one line a user needs. The switches are environment variables
read once, at TensorFlow's import, so they must be set before any stage or server imports it; the
subprocesses of ``kfp.local`` and ``make serve`` inherit them. ``CUDA_VISIBLE_DEVICES=""`` is set only when
the machine has no NVIDIA GPU, so a GPU is never hidden. A value already set by the user wins.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import MutableMapping
from pathlib import Path


def has_gpu() -> bool:
    """An NVIDIA GPU is visible (device node or driver tool), checked without importing TensorFlow."""
    return Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia").exists() or bool(shutil.which("nvidia-smi"))


def quiet_tensorflow(env: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Set TensorFlow's logging switches in ``env`` (default: this process's environment) unless set."""
    target = os.environ if env is None else env
    target.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    target.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    if not has_gpu():
        target.setdefault("CUDA_VISIBLE_DEVICES", "")
    return target
