"""Parquet tables on a local disk or in Google Cloud Storage, written atomically.

Why atomic: every stage re-reads what the previous one wrote, and ingest runs on a schedule. A crash
or a pre-empted pod in the middle of a write must leave the previous version readable, never half a
file. Locally we write a temporary file in the same directory and ``os.replace`` it (atomic on POSIX);
on GCS an object upload is already all-or-nothing, and a *generation precondition* makes a
read-modify-write (``upsert``) fail rather than silently overwrite a concurrent writer's version.

The GCS client honours ``STORAGE_EMULATOR_HOST`` (tests run a real emulator on 127.0.0.1).
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bitpredict.errors import BitPredictError

if TYPE_CHECKING:  # pragma: no cover
    from google.cloud.storage import Client

log = logging.getLogger(__name__)

GCS_SCHEME = "gs://"
_UPSERT_ATTEMPTS = 5


class StorageError(BitPredictError, RuntimeError):
    """A table could not be read or written; the message names the path."""


class ConcurrentWriteError(StorageError):
    """Another writer replaced the object between our read and our write (GCS precondition failed)."""


def is_gcs(uri: str | os.PathLike[str]) -> bool:
    return str(uri).startswith(GCS_SCHEME)


def join(base: str | os.PathLike[str], *parts: str) -> str:
    """Join path parts for a local path or a gs:// URI (never backslashes, never a double slash)."""
    base = str(base)
    if is_gcs(base):
        cleaned = [p.strip("/") for p in parts if p]
        return "/".join([base.rstrip("/"), *cleaned])
    return str(Path(base, *parts))


def _split_gcs(uri: str) -> tuple[str, str]:
    bucket, _, name = uri[len(GCS_SCHEME) :].partition("/")
    if not bucket or not name:
        raise StorageError(f"{uri}: expected gs://bucket/object")
    return bucket, name


_client: Client | None = None


def gcs_client() -> Client:
    """One storage client per process; anonymous when talking to an emulator."""
    global _client
    if _client is None:
        from google.cloud import storage as gcs

        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            _client = gcs.Client(
                project=os.environ.get("GOOGLE_CLOUD_PROJECT", "bitpredict-local"),
                credentials=AnonymousCredentials(),
            )
        else:
            _client = gcs.Client()
    return _client


def reset_gcs_client() -> None:
    """Forget the cached client (tests switch emulators; a forked worker needs its own)."""
    global _client
    _client = None


# --------------------------------------------------------------------------------------------
# bytes: the primitive both backends implement
# --------------------------------------------------------------------------------------------


def exists(uri: str | os.PathLike[str]) -> bool:
    uri = str(uri)
    if is_gcs(uri):
        bucket, name = _split_gcs(uri)
        return gcs_client().bucket(bucket).blob(name).exists()
    return Path(uri).exists()


def read_bytes(uri: str | os.PathLike[str]) -> tuple[bytes, int | None]:
    """The object's bytes and its GCS generation (``None`` locally)."""
    uri = str(uri)
    if is_gcs(uri):
        from google.api_core.exceptions import NotFound

        bucket, name = _split_gcs(uri)
        blob = gcs_client().bucket(bucket).blob(name)
        try:
            data = blob.download_as_bytes()
        except NotFound as exc:
            raise FileNotFoundError(uri) from exc
        return data, blob.generation
    return Path(uri).read_bytes(), None


def write_bytes(uri: str | os.PathLike[str], data: bytes, *, if_generation_match: int | None = None) -> None:
    """Write atomically. On GCS, ``if_generation_match`` (0 = must not exist) guards against lost updates."""
    uri = str(uri)
    if is_gcs(uri):
        from google.api_core.exceptions import PreconditionFailed

        bucket, name = _split_gcs(uri)
        blob = gcs_client().bucket(bucket).blob(name)
        try:
            blob.upload_from_string(
                data, content_type="application/octet-stream", if_generation_match=if_generation_match
            )
        except PreconditionFailed as exc:
            raise ConcurrentWriteError(
                f"{uri}: changed by another writer (generation is no longer {if_generation_match})"
            ) from exc
        return
    _atomic_local_write(Path(uri), data)


def _atomic_local_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory as the target, so os.replace never crosses a filesystem.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; tables are read by other users/containers
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every filesystem allows opening a directory.
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def write_text(uri: str | os.PathLike[str], text: str, *, if_generation_match: int | None = None) -> None:
    write_bytes(uri, text.encode("utf-8"), if_generation_match=if_generation_match)


def read_generation(uri: str | os.PathLike[str]) -> tuple[bytes | None, int]:
    """A GCS object's bytes and generation, ``(None, 0)`` when it does not exist.

    Why 0: it is the generation ``if_generation_match`` takes for "must not exist yet", so a caller can pass
    what it read straight into a conditional write (a compare-and-swap on the object).
    """
    try:
        data, generation = read_bytes(uri)
    except FileNotFoundError:
        return None, 0
    return data, int(generation or 0)


@dataclass(frozen=True)
class StoredObject:
    """One object under a ``gs://`` prefix: its URI and when it was created (seconds since the epoch)."""

    uri: str
    created: float


def list_objects(prefix_uri: str) -> list[StoredObject]:
    """Every object under a ``gs://`` prefix (a folder: the prefix ends at a ``/``)."""
    bucket, _, prefix = prefix_uri.removeprefix(GCS_SCHEME).partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    return [
        StoredObject(f"{GCS_SCHEME}{bucket}/{blob.name}", blob.time_created.timestamp() if blob.time_created else 0.0)
        for blob in gcs_client().list_blobs(bucket, prefix=prefix)
    ]


def delete_tree(uri: str | os.PathLike[str], *, first: Sequence[str] = ()) -> int:
    """Delete a local folder or every object under a ``gs://`` prefix; how many files/objects went.

    On GCS the objects go one by one, so ``first`` (paths relative to ``uri``) are deleted before the rest, in
    that order: the mirror of ``copy_tree``'s ``last`` — a SavedModel stops being loadable (no graph) before any
    of its variables disappear, so no reader ever loads a graph whose weights are half gone.
    """
    uri = str(uri)
    if is_gcs(uri):
        from google.api_core.exceptions import NotFound

        count = 0
        bucket = gcs_client().bucket(uri.removeprefix(GCS_SCHEME).partition("/")[0])
        order = {join(uri, *name.split("/")): i for i, name in enumerate(first)}
        for item in sorted(list_objects(uri), key=lambda o: (order.get(o.uri, len(order)), o.uri)):
            try:
                bucket.blob(item.uri.removeprefix(GCS_SCHEME).partition("/")[2]).delete()
                count += 1
            except NotFound:  # another process pruned it first
                pass
        return count
    import shutil

    path = Path(uri)
    count = sum(1 for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0
    shutil.rmtree(path, ignore_errors=True)
    return count


def read_text(uri: str | os.PathLike[str]) -> str:
    return read_bytes(uri)[0].decode("utf-8")


# --------------------------------------------------------------------------------------------
# parquet tables
# --------------------------------------------------------------------------------------------


def _to_parquet_bytes(df: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(df, preserve_index=False)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def _from_parquet_bytes(data: bytes, uri: str) -> pd.DataFrame:
    try:
        return pq.read_table(io.BytesIO(data)).to_pandas()
    except (pa.ArrowInvalid, OSError) as exc:
        raise StorageError(f"{uri}: not a readable parquet file ({exc})") from exc


def read_parquet(uri: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a whole table. A missing table is ``FileNotFoundError``; a corrupt one ``StorageError``."""
    data, _ = read_bytes(uri)
    return _from_parquet_bytes(data, str(uri))


def write_parquet(df: pd.DataFrame, uri: str | os.PathLike[str], *, if_generation_match: int | None = None) -> None:
    """Write a whole table atomically (the index is not stored: tables carry their keys as columns)."""
    write_bytes(uri, _to_parquet_bytes(df), if_generation_match=if_generation_match)
    log.debug("wrote table", extra={"path": str(uri), "rows": len(df)})


# --------------------------------------------------------------------------------------------
# upsert
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpsertResult:
    """What an upsert changed; ``new + updated == 0`` means the table was not rewritten."""

    new: int
    updated: int
    unchanged: int
    total: int

    @property
    def changed(self) -> bool:
        return self.new + self.updated > 0


def upsert(
    uri: str | os.PathLike[str],
    rows: pd.DataFrame,
    key: Sequence[str],
    *,
    sort_by: Sequence[str] | None = None,
) -> UpsertResult:
    """Merge ``rows`` into the table at ``uri``: one row per key, the newest wins, sorted, idempotent.

    "Newest" is the incoming row over the stored one, and a later incoming row over an earlier one
    with the same key. Upserting the same rows twice leaves the file byte-for-byte as it was (it is
    not rewritten when nothing changed). On GCS the write is conditional on the generation we read,
    and the whole read-merge-write is retried when another writer got there first.
    """
    key = list(key)
    missing = [k for k in key if k not in rows.columns]
    if missing:
        raise StorageError(f"{uri}: upsert rows lack key column(s) {missing}")
    order = list(sort_by) if sort_by is not None else key
    for attempt in range(1, _UPSERT_ATTEMPTS + 1):
        try:
            return _upsert_once(str(uri), rows, key, order)
        except ConcurrentWriteError:
            if attempt == _UPSERT_ATTEMPTS:
                raise
            log.warning("concurrent write, retrying upsert", extra={"path": str(uri), "attempt": attempt})
    raise AssertionError("unreachable")  # pragma: no cover


def _upsert_once(uri: str, rows: pd.DataFrame, key: list[str], order: list[str]) -> UpsertResult:
    try:
        data, generation = read_bytes(uri)
        stored = _from_parquet_bytes(data, uri)
    except FileNotFoundError:
        stored, generation = None, 0

    incoming = rows.drop_duplicates(subset=key, keep="last")
    if stored is None or stored.empty:
        merged, new, updated, unchanged = incoming, len(incoming), 0, 0
    else:
        _check_columns(uri, stored, incoming)
        incoming = incoming.reindex(columns=stored.columns.union(incoming.columns, sort=False))
        stored = stored.reindex(columns=incoming.columns)
        both = stored.merge(incoming[key], on=key, how="inner")
        n_overlap = len(both)
        same = _count_identical(stored, incoming, key)
        new = len(incoming) - n_overlap
        updated = n_overlap - same
        unchanged = len(stored) - updated
        if new == 0 and updated == 0:
            return UpsertResult(new=0, updated=0, unchanged=len(stored), total=len(stored))
        merged = pd.concat([stored, incoming], ignore_index=True).drop_duplicates(subset=key, keep="last")
        merged = merged.astype(_common_dtypes(stored, incoming))

    merged = merged.sort_values(order, kind="mergesort").reset_index(drop=True)
    write_parquet(merged, uri, if_generation_match=generation if is_gcs(uri) else None)
    return UpsertResult(new=new, updated=updated, unchanged=unchanged, total=len(merged))


def _check_columns(uri: str, stored: pd.DataFrame, incoming: pd.DataFrame) -> None:
    extra = [c for c in incoming.columns if c not in stored.columns]
    if extra:
        log.info("upsert adds columns", extra={"path": uri, "columns": extra})


def _common_dtypes(stored: pd.DataFrame, incoming: pd.DataFrame) -> dict[str, Any]:
    # Keep the stored dtype where concat widened it only because of all-NA incoming columns.
    out: dict[str, Any] = {}
    for col in stored.columns:
        if col in incoming.columns and incoming[col].isna().all() and not stored[col].isna().all():
            out[col] = stored[col].dtype
    return out


def _count_identical(stored: pd.DataFrame, incoming: pd.DataFrame, key: list[str]) -> int:
    """How many incoming rows equal the stored row with the same key (NaN equals NaN)."""
    joined = stored.merge(incoming, on=key, how="inner", suffixes=("_old", "_new"))
    if joined.empty:
        return 0
    same = pd.Series(True, index=joined.index)
    for col in stored.columns:
        if col in key:
            continue
        old, new = joined[f"{col}_old"], joined[f"{col}_new"]
        equal = (old == new) | (old.isna() & new.isna())
        same &= equal.fillna(False).astype(bool)
    return int(same.sum())


def copy_tree(source: str | os.PathLike[str], target: str | os.PathLike[str], *, last: Sequence[str] = ()) -> list[str]:
    """Copy a local directory to a local path or ``gs://`` prefix, replacing files of the same name.

    Locally the copy is assembled beside the target and renamed into place, so a reader never sees a
    half-written model directory. GCS has no rename: there the files named in ``last`` (paths relative to
    ``source``) are uploaded after every other file, in that order — a SavedModel's ``saved_model.pb`` and its
    metadata last, so a reader that waits for them (``locate``, TF Serving's loader, which retries a failed
    load) never takes a folder whose ``variables/`` are still arriving.
    """
    source = Path(source)
    order = {name: i for i, name in enumerate(last)}
    files = sorted(
        (p for p in source.rglob("*") if p.is_file()),
        key=lambda p: (order.get(p.relative_to(source).as_posix(), -1), p.as_posix()),
    )
    target = str(target)
    if is_gcs(target):
        for path in files:
            write_bytes(join(target, *path.relative_to(source).parts), path.read_bytes())
        return [join(target, *p.relative_to(source).parts) for p in files]
    import shutil

    final = Path(target)
    final.parent.mkdir(parents=True, exist_ok=True)
    _clear_dead_copies(final)
    staging = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    if final.exists() and _exchange(staging, final):  # one atomic step: the target is never missing
        shutil.rmtree(staging, ignore_errors=True)  # now holds the replaced copy
        return [str(final / p.relative_to(source)) for p in files]
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return [str(final / p.relative_to(source)) for p in files]


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where the system cannot."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    log.debug("renameat2 exchange unavailable", extra={"errno": ctypes.get_errno()})
    return False


def _clear_dead_copies(final: Path) -> None:
    """What a copy killed mid-way left beside ``final``: a missing target gets its replaced copy back (a kill
    between the two renames of the fallback), staging copies of dead processes are removed."""
    import shutil

    for leftover in sorted(final.parent.glob(f".{final.name}.*-*")):
        kind, _, pid = leftover.name.rpartition("-")
        if not pid.isdigit() or pid_alive(int(pid)) or not kind.endswith((".tmp", ".old")):
            continue
        if kind.endswith(".old") and not final.exists():
            leftover.rename(final)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs; a zombie (killed, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc here: the signal test is all there is
        return True
