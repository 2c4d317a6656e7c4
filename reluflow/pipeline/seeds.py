"""Run the notebooks over a range of seeds and count, per check, how often it holds.

A check is a claim, not one lucky draw: every ``check_<name>: True`` line a notebook prints must hold
for any value of its ``seed`` parameter. :func:`seed_sweep` executes each selected notebook once per
seed (by default one after another, each into a scratch folder, so the published results are untouched),
reads the ``check_*`` lines of its check cells (cells tagged ``nbval-check-output``), and tabulates the
pass rate of each check with the seeds where it failed. With ``jobs=k`` up to k runs go at once, each in
its own process and scratch folder (every kernel keeps one BLAS thread), so the table is the same for any
``jobs``. A notebook that raises counts as a failure of its pseudo-check ``notebook_runs`` (its checks
after the failing cell are then missing for that seed and count as failures too).

With ``log=FILE`` every run is appended to FILE as one JSON line (notebook, seed, profile, verdicts, error)
the moment it finishes, so a long sweep split over several processes (or interrupted) loses nothing:
:func:`table_from_logs` (``reluflow seeds --tabulate FILE ...``) builds the same table from the lines.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path

from reluflow.pipeline.runner import (
    DEFAULT_TIMEOUT,
    NotebookFailed,
    ParameterError,
    check_jobs,
    check_timeout,
    list_notebooks,
    project_root,
    resolve_notebook,
    run_notebook,
    spawn_pool,
)

__all__ = ["SeedTable", "check_lines", "seed_sweep", "table_from_logs"]

_CHECK = re.compile(r"^(check_[A-Za-z0-9_]+):\s*(True|False)\b")
RUNS = "notebook_runs"


def check_lines(notebook_path) -> dict[str, bool]:
    """``{check name: verdict}`` from the check cells of an executed notebook (the last verdict wins)."""
    nb = json.loads(Path(notebook_path).read_text())
    out = {}
    for cell in nb["cells"]:
        if "nbval-check-output" not in cell.get("metadata", {}).get("tags", []):
            continue
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                for line in "".join(o.get("text", "")).splitlines():
                    m = _CHECK.match(line.strip())
                    if m:
                        out[m.group(1)] = m.group(2) == "True"
    return out


@dataclass
class SeedTable:
    """Pass counts per (notebook, check) over the seeds run, and the seeds where each check failed."""

    seeds: list[int]
    passed: dict[tuple[str, str], int] = field(default_factory=dict)
    failed_seeds: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    errors: dict[tuple[str, int], str] = field(default_factory=dict)

    @property
    def all_pass(self) -> bool:
        return all(not v for v in self.failed_seeds.values())

    def record(self, notebook: str, seed: int, verdicts: dict[str, bool]) -> None:
        for name, ok in verdicts.items():
            key = (notebook, name)
            self.passed.setdefault(key, 0)
            self.failed_seeds.setdefault(key, [])
            if ok:
                self.passed[key] += 1
            else:
                self.failed_seeds[key].append(seed)

    def format(self) -> str:
        """A plain-text table: notebook, check, passed/total, failing seeds (the first ten)."""
        n = len(self.seeds)
        width = max([len("check")] + [len(c) for _, c in self.passed])
        nbw = max([len("notebook")] + [len(nb) for nb, _ in self.passed])
        lines = [f"{'notebook':<{nbw}}  {'check':<{width}}  {'passed':>9}  failing seeds", "-" * (nbw + width + 28)]
        for (nb, name) in sorted(self.passed, key=lambda k: (k[0], k[1] != RUNS, k[1])):
            bad = self.failed_seeds[(nb, name)]
            shown = ", ".join(map(str, bad[:10])) + (" …" if len(bad) > 10 else "")
            lines.append(f"{nb:<{nbw}}  {name:<{width}}  {self.passed[(nb, name)]:>4}/{n:<4}  {shown}")
        total = sum(len(v) for v in self.failed_seeds.values())
        lines.append(f"{len(self.passed)} checks x {n} seeds: "
                     + ("all pass" if self.all_pass else f"{total} failures"))
        for (nb, seed), err in sorted(self.errors.items()):
            lines.append(f"error: {nb} seed {seed}: {err}")
        return "\n".join(lines)


def _one_run(stem: str, seed: int, profile: str, out: Path, root: Path, timeout: float) -> tuple[dict, str]:
    """Run one notebook at one seed into ``out``; return its verdicts and its error ("" when it ran)."""
    try:
        run_notebook(stem, parameters={"seed": seed}, profile=profile, output_dir=out, root=root,
                     timeout=timeout, force=True)
        return {RUNS: True, **check_lines(out / "notebooks" / f"{stem}.ipynb")}, ""
    except NotebookFailed as exc:
        saved = exc.saved if exc.saved is not None and Path(exc.saved).exists() else None
        return {RUNS: False, **(check_lines(saved) if saved else {})}, str(exc).split(" (executed copy")[0]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def seed_sweep(names=None, *, seeds=range(10), profile: str = "fast", root=None, timeout: float = DEFAULT_TIMEOUT,
               progress: bool | None = None, stream=None, log=None, jobs: int = 1) -> SeedTable:
    """Execute each selected notebook once per seed (``-p seed s``) and tabulate its checks.

    Parameters
    ----------
    names : notebook names or numbers (default: all)
    seeds : iterable of non-negative ints
    profile : ``"fast"`` (default) or ``"paper"``
    log : optional path of a JSON-lines file; each finished run is appended to it at once
    jobs : how many runs go at once (default 1), each in its own worker process; the table does not depend on it
    """
    from tqdm.auto import tqdm

    timeout = check_timeout(timeout)
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ParameterError(f"seeds must be a non-empty list of integers >= 0; got {seeds!r}")
    jobs = check_jobs(jobs)
    stream = stream if stream is not None else sys.stdout
    root = project_root(root)
    paths = [resolve_notebook(n, root) for n in names] if names else list_notebooks(root)
    log = Path(log) if log is not None else None
    if log is not None and not log.parent.is_dir():
        raise ParameterError(f"log must be a file in an existing folder; got {str(log)!r}")
    table = SeedTable(seeds)
    scratch = Path(tempfile.mkdtemp(prefix="reluflow-seeds-"))
    plan = [(p.stem, s) for p in paths for s in seeds]
    bar = tqdm(total=len(plan), desc="seeds", unit="run", disable=None if progress is None else not progress,
               file=sys.stderr)
    runs: dict[tuple[str, int], dict[str, bool]] = {}

    def record(stem, seed, verdicts, error):
        runs[(stem, seed)] = verdicts
        if error:
            table.errors[(stem, seed)] = error
        if log is not None:
            with log.open("a") as fh:
                fh.write(json.dumps({"notebook": stem, "seed": seed, "profile": profile,
                                     "verdicts": verdicts, "error": error}) + "\n")
        bar.set_postfix_str(f"{stem} seed {seed}")
        bar.update()

    try:
        args = {(stem, seed): (stem, seed, profile, scratch / f"{stem}-{seed}", root, timeout) for stem, seed in plan}
        if jobs == 1:  # in this process (tests patch papermill here)
            for key in plan:
                record(*key, *_one_run(*args[key]))
        else:
            with spawn_pool(jobs) as pool:
                futures = {pool.submit(_one_run, *args[key]): key for key in plan}
                for future in as_completed(futures):
                    record(*futures[future], *future.result())
    finally:
        bar.close()
        shutil.rmtree(scratch, ignore_errors=True)
    _fill(table, runs)
    print(table.format(), file=stream)
    return table


def _fill(table: SeedTable, runs: dict) -> None:
    """Record every run; a check that a failing run never reached counts as failed for that seed."""
    expected: dict[str, set] = {}
    for (nb, _), verdicts in runs.items():
        expected.setdefault(nb, set()).update(verdicts)
    for (nb, seed), verdicts in sorted(runs.items()):
        table.record(nb, seed, {name: verdicts.get(name, False) for name in expected[nb]})


def table_from_logs(paths, *, profile: str | None = None) -> SeedTable:
    """The :class:`SeedTable` of the runs in the JSON-lines logs written by :func:`seed_sweep` (``log=``).

    A (notebook, seed) run found twice keeps its last line. With ``profile`` only that profile's runs count;
    a log that mixes profiles without ``profile`` is refused.
    """
    runs: dict[tuple[str, int], dict[str, bool]] = {}
    errors: dict[tuple[str, int], str] = {}
    profiles = set()
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ParameterError(f"log {str(path)!r} does not exist")
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                key, verdicts = (str(rec["notebook"]), int(rec["seed"])), dict(rec["verdicts"])
                run_profile, error = str(rec["profile"]), str(rec.get("error", ""))
            except (ValueError, KeyError, TypeError) as exc:
                raise ParameterError(f"log {str(path)!r} line {number} is not a seed-sweep record: {exc}") from None
            if profile is not None and run_profile != profile:
                continue
            profiles.add(run_profile)
            runs[key] = {k: bool(v) for k, v in verdicts.items()}
            if error:
                errors[key] = error
            else:
                errors.pop(key, None)
    if len(profiles) > 1:
        raise ParameterError(f"the logs mix the profiles {sorted(profiles)}; pass profile= to choose one")
    if not runs:
        raise ParameterError("the logs hold no run" + (f" of profile {profile!r}" if profile else ""))
    table = SeedTable(sorted({seed for _, seed in runs}))
    table.errors.update(errors)
    _fill(table, runs)
    return table
