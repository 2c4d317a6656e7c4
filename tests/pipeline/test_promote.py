"""All-or-nothing publication of a notebook's outputs, under faults, kills and unwritable folders.

Oracle: the file system itself (the published set is compared with the old and the new set).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from reluflow.pipeline import runner as pl
from reluflow.pipeline.promote import JOURNAL, OutputError, check_writable, new_stage, promote, recover, stages

ROOT = Path(__file__).resolve().parents[2]
FILES = ("notebooks/01_x.ipynb", "data/01_x.nc", "figures/01_a.png", "figures/01_b.png", "figures/01_new.png")


def _published(dest: Path) -> dict:
    return {f: (dest / f).read_text() for f in FILES if (dest / f).exists()}


def _setup(dest: Path):
    """An old published set (without 01_new.png) and a stage holding the new set."""
    for f in FILES[:-1]:
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        (dest / f).write_text(f"old {f}")
    old = _published(dest)
    stage = new_stage(dest)
    for f in FILES:
        (stage / f).write_text(f"new {f}")
    new = {f: f"new {f}" for f in FILES}
    return stage, [stage / f for f in FILES], old, new


def test_promote_publishes_everything_and_leaves_no_journal(tmp_path):
    stage, files, old, new = _setup(tmp_path)
    written = promote(stage, tmp_path, files)
    assert _published(tmp_path) == new and len(written) == len(FILES)
    assert not (stage / JOURNAL).exists()


@pytest.mark.parametrize("k", range(1, len(FILES)))
def test_a_failed_rename_rolls_back_to_the_old_set(tmp_path, k):
    stage, files, old, _ = _setup(tmp_path)

    def fail(i):
        if i == k:
            raise OSError(30, "Read-only file system")

    with pytest.raises(OutputError, match="could not publish .* previous outputs were restored"):
        promote(stage, tmp_path, files, after_rename=fail)
    assert _published(tmp_path) == old


class _Killed(BaseException):
    """Stands for the process dying: nothing in promote catches it."""


@pytest.mark.parametrize("k", range(1, len(FILES)))
def test_a_run_killed_between_renames_is_rolled_back_by_the_next_run(tmp_path, k):
    stage, files, old, _ = _setup(tmp_path)

    def die(i):
        if i == k:
            raise _Killed

    with pytest.raises(_Killed):
        promote(stage, tmp_path, files, after_rename=die)
    assert (stage / JOURNAL).exists() and _published(tmp_path) != old  # half-published, as after a kill
    (stage / "owner.pid").write_text("999999999")  # its owner is gone
    assert recover(tmp_path) == [stage]
    assert _published(tmp_path) == old and stages(tmp_path) == []


_KILL_SCRIPT = """
import importlib.util, sys, time
from pathlib import Path
# promote.py needs only the standard library: load it alone (fast, and independent of the package's imports)
spec = importlib.util.spec_from_file_location("promote", {path!r})
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
promote = mod.promote
stage, dest = Path(sys.argv[1]), Path(sys.argv[2])
files = [stage / f for f in {files!r}]
print("ready", flush=True)
promote(stage, dest, files, after_rename=lambda k: time.sleep(0.05))
print("done", flush=True)
time.sleep(10)
"""


def test_sigkill_at_random_points_never_leaves_a_mixed_set(tmp_path):
    rng = np.random.default_rng(0)
    outcomes, mid_promotion = set(), 0
    for trial in range(8):
        dest = tmp_path / f"t{trial}"
        stage, files, old, new = _setup(dest)
        (stage / "owner.pid").unlink()
        script = _KILL_SCRIPT.format(path=str(ROOT / "reluflow/pipeline/promote.py"), files=FILES)
        proc = subprocess.Popen([sys.executable, "-c", script, str(stage), str(dest)], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.0, 0.3)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        mid_promotion += (stage / JOURNAL).exists()
        recover(dest)
        published = _published(dest)
        assert published in (old, new), f"trial {trial}: a mixed set {published}"
        outcomes.add("old" if published == old else "new")
        assert stages(dest) == []
    # the kill landed between two renames in at least one trial (5 renames span ~0.25 s of the 0.3 s window)
    assert mid_promotion >= 1, outcomes


def test_a_live_run_s_stage_is_left_alone(tmp_path):
    stage = new_stage(tmp_path)
    (stage / "owner.pid").write_text(str(os.getppid()))  # a live process that is not us
    assert recover(tmp_path) == [] and stage.exists()


def test_a_stage_without_journal_from_a_killed_run_is_removed(tmp_path):
    stage = new_stage(tmp_path)
    (stage / "owner.pid").write_text("999999999")
    (stage / "data" / "half.nc").write_text("partial")
    recover(tmp_path)
    assert not stage.exists()


def test_unwritable_destination_is_refused_with_the_folder_named(tmp_path):
    (tmp_path / "figures").write_text("not a folder")
    with pytest.raises(OutputError, match=r"cannot write the output folder .*figures"):
        check_writable(tmp_path)


def test_run_refuses_an_unwritable_destination_before_any_kernel_starts(tmp_path, monkeypatch):
    (tmp_path / "figures").write_text("not a folder")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "01_truncation_maps.nc").write_text("previous")

    def no_kernel(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("a kernel was started")

    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", no_kernel)
    with pytest.raises(OutputError, match="figures"):
        pl.run_notebook("01", output_dir=tmp_path, root=ROOT)
    with pytest.raises(OutputError, match="figures"):
        pl.reproduce(["01", "02"], output_dir=tmp_path, root=ROOT, progress=False)
    assert (tmp_path / "data" / "01_truncation_maps.nc").read_text() == "previous"


@pytest.mark.parametrize("timeout", [0, -5, float("nan"), float("inf"), True, "10"])
def test_bad_timeouts_are_refused(timeout):
    with pytest.raises(pl.ParameterError, match="timeout must be a finite number of seconds > 0"):
        pl.run_notebook("01", root=ROOT, timeout=timeout)


def test_cli_reports_bad_timeout_and_unwritable_folder(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "reluflow", *args], capture_output=True, text=True, cwd=ROOT)

    res = cli("run", "01", "--timeout", "0", "--output-dir", str(tmp_path))
    assert res.returncode == 2 and "timeout must be a finite number of seconds > 0; got 0.0" in res.stderr
    (tmp_path / "figures").write_text("x")
    res = cli("run", "01", "--output-dir", str(tmp_path))
    assert res.returncode == 1 and "cannot write the output folder" in res.stderr and "Traceback" not in res.stderr
