"""`reluflow seeds`: pass rates of every check over a range of seeds.

Oracle: a toy project whose one notebook has a check that holds exactly for even seeds and a cell that
raises for seed 3, so the expected table is known in advance.
"""

from __future__ import annotations

import io
import json
import os

import pytest

from reluflow.pipeline.runner import ParameterError
from reluflow.pipeline.seeds import RUNS, check_lines, seed_sweep, table_from_logs

#: One notebook: two checks before a cell that fails for seed 3, and one check after it.
TOY = {"01_toy": [("seed = 0", ["parameters"]),
                  ("print(f'check_always: True  (seed {seed})')\nprint(f'check_even: {seed % 2 == 0}')",
                   ["nbval-check-output"]),
                  ("if seed == 3:\n    raise ValueError('seed 3 is bad')", []),
                  ("print('check_after_the_failure: True')", ["nbval-check-output"])]}


def test_check_lines_reads_verdicts_of_check_cells_only(tmp_path):
    nb = {"cells": [{"cell_type": "code", "metadata": {"tags": ["nbval-check-output"]}, "source": "",
                     "outputs": [{"output_type": "stream", "name": "stdout",
                                  "text": ["check_a: True  (error 1e-15)\n", "check_b: False\n", "not a check\n"]}]},
                    {"cell_type": "code", "metadata": {}, "source": "",
                     "outputs": [{"output_type": "stream", "name": "stdout", "text": "check_c: False\n"}]}]}
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb))
    assert check_lines(path) == {"check_a": True, "check_b": False}


def test_seed_sweep_counts_passes_failures_and_crashes(tmp_path, toy_project):
    root = toy_project(tmp_path / "project", TOY)
    out = io.StringIO()
    table = seed_sweep(["01"], seeds=range(5), profile="paper", root=root, progress=False, stream=out)
    assert table.passed[("01_toy", RUNS)] == 4 and table.failed_seeds[("01_toy", RUNS)] == [3]
    assert table.passed[("01_toy", "check_always")] == 5
    assert table.failed_seeds[("01_toy", "check_even")] == [1, 3]
    # the check after the failing cell was not reached for seed 3: it counts as failed there
    assert table.failed_seeds[("01_toy", "check_after_the_failure")] == [3]
    assert not table.all_pass and "seed 3 is bad" in out.getvalue() and "1, 3" in out.getvalue()
    assert not list((root / "notebooks").glob("*.nc")) and not (root / "data").exists()  # nothing published


def test_a_sweep_split_over_two_logs_gives_the_same_table(tmp_path, toy_project):
    root = toy_project(tmp_path / "project", TOY)
    whole = seed_sweep(["01"], seeds=range(5), profile="paper", root=root, progress=False, stream=io.StringIO())
    logs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    seed_sweep(["01"], seeds=range(3), profile="paper", root=root, progress=False, stream=io.StringIO(), log=logs[0])
    seed_sweep(["01"], seeds=range(3, 5), profile="paper", root=root, progress=False, stream=io.StringIO(),
               log=logs[1])
    assert len(logs[0].read_text().splitlines()) == 3  # one line per finished run
    merged = table_from_logs(logs)
    assert merged.seeds == [0, 1, 2, 3, 4]
    assert merged.passed == whole.passed and merged.failed_seeds == whole.failed_seeds
    assert merged.format() == whole.format()
    with pytest.raises(ParameterError, match="does not exist"):
        table_from_logs([tmp_path / "missing.jsonl"])
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(ParameterError, match="line 1 is not a seed-sweep record"):
        table_from_logs([tmp_path / "bad.jsonl"])
    with pytest.raises(ParameterError, match="no run of profile 'fast'"):
        table_from_logs(logs, profile="fast")


def test_two_jobs_give_the_same_table_and_log_lines_as_one(tmp_path, toy_project):
    """Oracle: the serial sweep of the same toy project (order of finishing must not matter)."""
    root = toy_project(tmp_path / "project", TOY)
    serial = seed_sweep(["01"], seeds=range(4), profile="paper", root=root, progress=False, stream=io.StringIO())
    log = tmp_path / "par.jsonl"
    par = seed_sweep(["01"], seeds=range(4), profile="paper", root=root, progress=False, stream=io.StringIO(),
                     log=log, jobs=2)
    assert par.passed == serial.passed and par.failed_seeds == serial.failed_seeds and par.errors == serial.errors
    assert par.format() == serial.format()
    assert sorted(json.loads(line)["seed"] for line in log.read_text().splitlines()) == [0, 1, 2, 3]
    for jobs in (0, -1, True, 1.5):
        with pytest.raises(ParameterError, match="jobs must be an integer >= 1"):
            seed_sweep(["01"], seeds=[0], root=root, jobs=jobs)


def test_a_kernel_that_dies_before_the_first_cell_is_restarted_but_a_failing_cell_is_not(tmp_path, monkeypatch,
                                                                                         toy_project):
    # The retry lives in the runner (reluflow.pipeline.runner._execute), so reproduce, check and seeds share it:
    # papermill itself is made to fail once, before any cell ran, for seed 0.
    import papermill

    root = toy_project(tmp_path / "project", TOY)
    real, calls = papermill.execute_notebook, []

    def flaky(path, out, **kwargs):
        seed = kwargs["parameters"]["seed"]
        calls.append(seed)
        if seed == 0 and calls.count(0) == 1:
            raise RuntimeError("Kernel died before replying to kernel_info")
        return real(path, out, **kwargs)

    monkeypatch.setattr(papermill, "execute_notebook", flaky)
    table = seed_sweep(["01"], seeds=[0, 3], profile="paper", root=root, progress=False, stream=io.StringIO())
    assert calls == [0, 0, 3]  # seed 0 restarted once; seed 3's failing cell is a real failure, not retried
    assert table.failed_seeds[("01_toy", RUNS)] == [3] and table.passed[("01_toy", "check_always")] == 2


def test_a_kernel_that_keeps_dying_fails_after_the_retries_with_a_clear_message(tmp_path, monkeypatch, toy_project):
    import papermill

    from reluflow.pipeline.runner import KERNEL_START_RETRIES, NotebookFailed, run_notebook

    root = toy_project(tmp_path / "project", TOY)
    calls = []

    def dead(path, out, **kwargs):
        calls.append(1)
        raise RuntimeError("Kernel died before replying to kernel_info")

    monkeypatch.setattr(papermill, "execute_notebook", dead)
    with pytest.raises(NotebookFailed, match="before its first cell: RuntimeError: Kernel died"):
        run_notebook("01", parameters={"seed": 0}, root=root, output_dir=tmp_path / "out")
    assert len(calls) == KERNEL_START_RETRIES + 1


@pytest.mark.parametrize("seeds", [[], [-1], [True], [1.5]])
def test_bad_seed_lists_are_refused(tmp_path, seeds, toy_project):
    with pytest.raises(ParameterError, match="seeds must be a non-empty list of integers >= 0"):
        seed_sweep(["01"], seeds=seeds, root=toy_project(tmp_path / "p", TOY))


#: Seeds other than the notebooks' default (0), run by `make test` at the fast profile. A check is a claim,
#: not one lucky draw: every check of every notebook must hold for each of them. The 100-seed table of the
#: last closing note comes from `reluflow seeds --from 0 --to 99 --profile fast`.
MORE_SEEDS = (1, 2, 3, 4, 5)


def test_every_check_of_every_notebook_holds_for_five_more_seeds():
    out = io.StringIO()
    # one run per core, 2 to 4 at once (each kernel has one BLAS thread; the table does not depend on jobs, see the
    # test above)
    table = seed_sweep(seeds=MORE_SEEDS, profile="fast", progress=False, stream=out,
                       jobs=max(2, min(4, os.cpu_count() or 1)))
    print(out.getvalue())
    assert not table.errors, table.errors
    failing = {key: seeds for key, seeds in table.failed_seeds.items() if seeds}
    assert not failing, out.getvalue()
    # the sweep saw every notebook run and at least one real check besides the pseudo-check
    notebooks = {nb for nb, _ in table.passed}
    assert all(table.passed[(nb, RUNS)] == len(MORE_SEEDS) for nb in notebooks)
    assert all(any(name != RUNS for n, name in table.passed if n == nb) for nb in notebooks)
    from reluflow.pipeline.runner import list_notebooks
    assert notebooks == {p.stem for p in list_notebooks()}
