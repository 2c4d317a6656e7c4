"""All-or-nothing publication of a notebook's outputs: a journal, backups, and recovery.

A notebook runs in a staging folder ``<dest>/.staging-*`` (see :mod:`reluflow.pipeline.runner`).
When it succeeds, its files are *promoted* into ``<dest>/notebooks``, ``data`` and ``figures`` as one
transaction:

1. The plan (which staged file replaces which destination, and whether that destination existed) is
   written to ``<stage>/journal.json`` by an atomic rename. From then on the stage is *in flight*.
2. Each destination that exists is hard-linked (or copied) to ``<stage>/backup/`` before the staged
   file is renamed over it (one atomic ``os.replace`` per file).
3. When every rename has succeeded, the journal is deleted: that is the commit point. The stage is
   then removed.

If a rename fails (a read-only folder, a full disk) the promotion is rolled back at once and the error
is raised. If the process is killed, the next run finds the stage with its journal and rolls it back
(:func:`recover`): every destination returns to its previous content, and files the interrupted run
had added are removed. A stage without a journal (killed while the notebook was executing) is simply
removed. So the published set of a notebook (its executed copy, its data and its figures) is always
entirely the old one or entirely the new one.

Before a run starts, :func:`check_writable` tries to create a file in every destination folder, and
refuses with a message naming the folder if it cannot.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["OutputError", "SUBFOLDERS", "JOURNAL", "check_writable", "new_stage", "promote", "recover", "stages"]

#: The destination folders a notebook writes to, relative to the output root.
SUBFOLDERS = ("notebooks", "data", "figures")
JOURNAL = "journal.json"
OWNER = "owner.pid"
STAGE_PREFIX = ".staging-"


class OutputError(OSError):
    """A destination cannot be written, or a promotion failed and was rolled back."""


def stages(dest: Path) -> list[Path]:
    """Staging folders left under ``dest`` (by a run that is still going, or one that was killed)."""
    dest = Path(dest)
    return sorted(p for p in dest.glob(STAGE_PREFIX + "*") if p.is_dir()) if dest.is_dir() else []


def new_stage(dest: Path) -> Path:
    """A fresh staging folder under ``dest``, owned by this process (its pid is written in it)."""
    stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=dest))
    (stage / OWNER).write_text(str(os.getpid()))
    for sub in SUBFOLDERS:
        (stage / sub).mkdir()
    return stage


def _owner_alive(stage: Path) -> bool:
    try:
        pid = int((stage / OWNER).read_text())
    except (OSError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_writable(dest: Path) -> None:
    """Raise :class:`OutputError` unless a file can be created in each of ``dest``'s output folders."""
    dest = Path(dest)
    for sub in ("",) + SUBFOLDERS:
        folder = dest / sub
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise OutputError(f"cannot write the output folder {folder}: {exc.strerror or exc}; "
                              "make it writable or choose another --output-dir") from None


def _write_journal(stage: Path, entries: list[dict]) -> None:
    tmp = stage / (JOURNAL + ".tmp")
    with open(tmp, "w") as fh:
        json.dump({"entries": entries}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, stage / JOURNAL)


def _backup(dest: Path, backup: Path) -> None:
    backup.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(dest, backup)
    except OSError:  # no hard links here: copy, then rename, so that a backup is never partial
        tmp = backup.with_name(backup.name + ".partial")
        shutil.copy2(dest, tmp)
        os.replace(tmp, backup)


def _rollback(dest_root: Path, stage: Path, entries: list[dict]) -> None:
    """Return every destination of ``entries`` to its content before the promotion."""
    for e in reversed(entries):
        dest = dest_root / e["dest"]
        backup = stage / "backup" / e["dest"]
        if e["existed"]:
            if backup.exists():
                os.replace(backup, dest)
            # no backup: the rename had not happened, dest still holds the old file
        elif dest.exists():
            dest.unlink()  # the file did not exist before this promotion


def promote(stage: Path, dest_root: Path, files: list[Path], *, after_rename: Callable[[int], None] | None = None
            ) -> list[Path]:
    """Move the staged ``files`` (paths under ``stage/<subfolder>/``) into ``dest_root``, all or nothing.

    Returns the destinations written. On an ``OSError`` during the renames everything is rolled back
    and :class:`OutputError` is raised, naming the file. ``after_rename(k)`` is called after the k-th
    rename (for fault-injection tests).
    """
    stage, dest_root = Path(stage), Path(dest_root)
    entries = []
    for src in files:
        rel = Path(src).relative_to(stage)
        entries.append({"src": str(rel), "dest": str(rel), "existed": (dest_root / rel).exists()})
    if not entries:
        return []
    _write_journal(stage, entries)
    done = []
    try:
        for k, e in enumerate(entries, start=1):
            dest = dest_root / e["dest"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            if e["existed"]:
                _backup(dest, stage / "backup" / e["dest"])
            os.replace(stage / e["src"], dest)
            done.append(dest)
            if after_rename is not None:
                after_rename(k)
    except OSError as exc:
        _rollback(dest_root, stage, entries)
        (stage / JOURNAL).unlink(missing_ok=True)
        raise OutputError(f"could not publish {e['dest']} under {dest_root}: {exc.strerror or exc}; "
                          "the notebook's previous outputs were restored") from None
    (stage / JOURNAL).unlink()  # the commit point
    return done


def recover(dest_root: Path) -> list[Path]:
    """Roll back interrupted promotions and remove every leftover stage under ``dest_root``.

    Returns the stages handled. Stages whose owning process is still alive are left alone.
    """
    handled = []
    for stage in stages(dest_root):
        if _owner_alive(stage):
            continue  # another run, still going, owns it
        journal = stage / JOURNAL
        if journal.exists():
            entries = json.loads(journal.read_text())["entries"]
            _rollback(Path(dest_root), stage, entries)
        shutil.rmtree(stage, ignore_errors=True)
        handled.append(stage)
    return handled
