"""Running the notebooks: listing their parameters, executing them through papermill, and
reproducing every figure and result.

How outputs stay safe and stable:

- **Staging.** A notebook runs with its working directory inside a fresh staging folder
  (``<output>/.staging-*/notebooks``), so its relative outputs ``../data`` and ``../figures`` land
  in staging. Only when the notebook succeeds are its files moved into place, one atomic rename
  each. A failed notebook leaves every previous figure, result and notebook untouched; its
  executed copy, with the error, is kept in ``build/failed/`` for inspection.
- **Determinism.** Volatile metadata (papermill timestamps and durations, nbclient timings, paths)
  is removed from executed notebooks, and files whose content did not change are not rewritten,
  so reproducing twice leaves ``git status`` clean.
- **Where outputs go.** With the paper profile and no ``-p`` overrides, outputs are the published
  ones (the repository's ``notebooks/``, ``data/``, ``figures/``). A ``fast`` profile run writes
  to ``build/fast/`` and a run with overrides to ``build/custom/``, unless ``output_dir`` is
  given, so published results are never overwritten by smoke or exploratory runs.
- **Parameters.** Names and types of ``-p`` overrides and profile values are checked against the
  notebook's own parameters cell before any kernel starts.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import io
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from reluflow.pipeline.promote import SUBFOLDERS, OutputError, check_writable, new_stage, promote, recover

__all__ = [
    "ParameterError",
    "NotebookFailed",
    "OutputError",
    "check",
    "check_jobs",
    "check_timeout",
    "prepare_output",
    "RunResult",
    "project_root",
    "list_notebooks",
    "resolve_notebook",
    "notebook_parameters",
    "coerce_parameters",
    "load_profile",
    "run_notebook",
    "reproduce",
    "strip_volatile_metadata",
    "PROFILES",
    "DEFAULT_TIMEOUT",
]

PROFILES = ("paper", "fast")
#: Per-cell timeout in seconds (every notebook is meant to run in well under a minute).
DEFAULT_TIMEOUT = 600
KERNEL = "python3"


class ParameterError(ValueError):
    """An unknown notebook, profile or parameter, or a value of the wrong type."""


class NotebookFailed(RuntimeError):
    """A notebook raised during execution; the message names the notebook and the cell."""

    def __init__(self, name: str, cell: int | None, message: str, saved: Path | None = None,
                 exec_count: int | None = None):
        self.name, self.cell, self.saved = name, cell, saved
        where = f"cell {cell}" if cell is not None else "before its first cell"
        if exec_count is not None:
            where += f" (In [{exec_count}])"
        text = f"notebook {name} failed in {where}: {message}"
        if saved is not None:
            text += f" (executed copy with the error: {saved})"
        super().__init__(text)


@dataclass
class RunResult:
    """The outcome of one notebook run."""

    name: str
    status: str  # "ok" or "failed"
    seconds: float
    output_root: Path
    written: list[Path] = field(default_factory=list)
    error: str = ""
    deviations: list = field(default_factory=list)  # one reluflow.pipeline.compare.Deviation per artefact


# --------------------------------------------------------------------------------------------
# Finding notebooks and their parameters


def project_root(root=None) -> Path:
    """The project folder holding ``notebooks/`` (by default, the checkout reluflow runs from)."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    if not (root / "notebooks").is_dir():
        raise FileNotFoundError(
            f"no notebooks/ folder under {root}: run from a source checkout of reluflow "
            "(pip install -e .), or pass --root"
        )
    return root


def list_notebooks(root=None) -> list[Path]:
    """The project's notebooks, ``notebooks/NN_topic.ipynb``, in order."""
    return sorted(project_root(root).joinpath("notebooks").glob("[0-9][0-9]_*.ipynb"))


def resolve_notebook(name: str, root=None) -> Path:
    """A notebook by full name, name without ``.ipynb``, or number prefix (``01``)."""
    notebooks = list_notebooks(root)
    stem = Path(str(name)).name.removesuffix(".ipynb")
    matches = [p for p in notebooks if p.stem == stem] or [p for p in notebooks if p.stem.split("_")[0] == stem]
    if len(matches) != 1:
        known = ", ".join(p.stem for p in notebooks) or "none"
        raise ParameterError(f"unknown notebook {name!r}; known notebooks: {known}")
    return matches[0]


def notebook_parameters(path) -> dict[str, dict]:
    """Parameters declared in a notebook's ``parameters`` cell: name → {default, type, help}.

    ``default`` is the literal value; ``type`` is its Python type name.
    """
    import papermill

    out = {}
    for name, spec in papermill.inspect_notebook(str(path)).items():
        try:
            default = ast.literal_eval(spec["default"])
        except (ValueError, SyntaxError):
            raise ParameterError(
                f"{Path(path).name}: parameter {name!r} must have a literal default; got {spec['default']!r}"
            ) from None
        out[name] = {"default": default, "type": type(default).__name__, "help": spec.get("help", "")}
    return out


def _coerce(nb: str, name: str, default, value):
    expected = type(default)
    bad = ParameterError(
        f"{nb}: parameter {name!r} expects {expected.__name__} (default {default!r}); got {value!r}"
    )
    if isinstance(value, str) and expected is not str:
        if expected is bool:
            if value.lower() in ("true", "1", "yes"):
                return True
            if value.lower() in ("false", "0", "no"):
                return False
            raise bad
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise bad from None
    if expected is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad
    if expected in (list, tuple):
        if isinstance(value, (list, tuple)):
            items = list(value)
            if default and all(isinstance(d, (int, float)) and not isinstance(d, bool) for d in default):
                want_int = all(isinstance(d, int) for d in default)
                for v in items:
                    ok = isinstance(v, int) if want_int else isinstance(v, (int, float))
                    if not ok or isinstance(v, bool):
                        raise bad
            return items
        raise bad
    if isinstance(value, expected):
        return value
    raise bad


def coerce_parameters(path, overrides: dict) -> dict:
    """Check override names against the notebook's parameters and convert values to their types.

    String values (from the command line) are parsed as Python literals; numbers, lists and
    booleans must match the default's type (an int is accepted for a float).
    """
    nb = Path(path).stem
    params = notebook_parameters(path)
    out = {}
    for name, value in overrides.items():
        if name not in params:
            known = ", ".join(params) or "none"
            raise ParameterError(f"{nb}: unknown parameter {name!r}; parameters are: {known}")
        out[name] = _coerce(nb, name, params[name]["default"], value)
    return out


def load_profile(profile: str, root=None) -> dict[str, dict]:
    """Overrides of a profile: notebook stem → {parameter: value}. 'paper' has none."""
    if profile not in PROFILES:
        raise ParameterError(f"unknown profile {profile!r}; profiles are: {', '.join(PROFILES)}")
    if profile == "paper":
        return {}
    import yaml

    path = project_root(root) / "notebooks" / "profiles" / f"{profile}.yaml"
    if not path.is_file():
        raise ParameterError(f"profile {profile!r} has no file {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ParameterError(f"{path}: must map notebook names to mappings of parameter values")
    stems = {p.stem for p in list_notebooks(root)}
    for nb in data:
        if nb not in stems:
            raise ParameterError(f"{path}: unknown notebook {nb!r}; known notebooks: {', '.join(sorted(stems))}")
    return data


# --------------------------------------------------------------------------------------------
# Executing


def strip_volatile_metadata(nb):
    """Remove run-dependent metadata (timestamps, durations, paths) from an executed notebook."""
    meta = nb.metadata.get("papermill")
    if meta is not None:
        nb.metadata["papermill"] = {"parameters": meta.get("parameters", {})}
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell["id"] = "injected-parameters"  # papermill gives it a random id
        if cell.cell_type == "code":
            cell.outputs = _coalesce_streams(cell.outputs)
    return nb


def _coalesce_streams(outputs):
    """Merge consecutive stream outputs of the same name (the kernel may split them by timing)."""
    merged = []
    for out in outputs:
        if (out.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == out.get("name")):
            merged[-1]["text"] = merged[-1]["text"] + out["text"]
        else:
            merged.append(out)
    return merged


def _to_publish(stage: Path, dest_root: Path, force: bool) -> tuple[list[Path], list]:
    """The staged files that differ from their destinations beyond tolerance (all of them if ``force``),
    and the :class:`~reluflow.pipeline.compare.Deviation` of every staged file."""
    from reluflow.pipeline.compare import compare_artefact

    files, deviations = [], []
    for sub in SUBFOLDERS:
        src_dir = stage / sub
        for src in sorted(p for p in src_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
            dest = dest_root / sub / src.relative_to(src_dir)
            dev = compare_artefact(dest, src)
            deviations.append(dev)
            if force or not dev.agrees:
                files.append(src)
    return files, deviations


def _default_output(root: Path, profile: str, overrides: dict) -> Path:
    if profile == "paper" and not overrides:
        return root
    return root / "build" / ("custom" if overrides else profile)


def check_timeout(timeout) -> float:
    """A per-cell timeout in seconds: a finite number > 0 (there is no 'no timeout')."""
    import math

    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) \
            or timeout <= 0:
        raise ParameterError(f"timeout must be a finite number of seconds > 0; got {timeout!r}")
    return float(timeout)


def run_notebook(name: str, *, parameters: dict | None = None, profile: str = "paper", output_dir=None,
                 root=None, timeout: float = DEFAULT_TIMEOUT, force: bool = False) -> RunResult:
    """Execute one notebook through papermill and move its outputs into place on success.

    Parameters
    ----------
    name : notebook name, stem or number (``"01"``)
    parameters : overrides ``{name: value}``, applied after the profile's
    profile : ``"paper"`` (the notebook's defaults) or ``"fast"``
    output_dir : root under which ``notebooks/``, ``data/``, ``figures/`` are written (default:
        the repository for paper runs without overrides, else ``build/<profile>`` or ``build/custom``)
    timeout : per-cell timeout in seconds (> 0)
    force : rewrite every output, even those that agree with the existing file within the tolerances
        of :mod:`reluflow.pipeline.compare` (by default only files that differ beyond them are rewritten)

    Raises :class:`ParameterError` before starting a kernel if a parameter is unknown or of the
    wrong type, and :class:`NotebookFailed` (naming the cell) if the notebook raises.
    """
    timeout = check_timeout(timeout)
    root = project_root(root)
    path = resolve_notebook(name, root)
    overrides = {**load_profile(profile, root).get(path.stem, {}), **(parameters or {})}
    values = coerce_parameters(path, overrides)
    dest = Path(output_dir) if output_dir is not None else _default_output(root, profile, parameters or {})
    return _execute(path, values, dest, root, timeout, force=force)


def prepare_output(dest) -> Path:
    """Recover ``dest`` from interrupted runs, and check that its output folders can be written."""
    dest = Path(dest).resolve()
    check_writable(dest)
    recover(dest)
    return dest


#: BLAS thread variables a kernel gets when the caller has not set them. The notebooks' matrices are small (at
#: most a few hundred rows), and on them multi-threaded OpenBLAS is slower than one thread: notebook 07 took
#: 74 s with the default threads and 10 s with one, on a busy 2-core machine. Results agree either way within
#: the tolerances of reluflow.pipeline.compare (``make test`` checks them with two threads).
KERNEL_THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextlib.contextmanager
def _kernel_environment():
    """Set the unset entries of :data:`KERNEL_THREADS` in os.environ while a kernel starts (it inherits them)."""
    added = {k: v for k, v in KERNEL_THREADS.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def _stage_notebook(path: Path, values: dict, stage: Path, root: Path, timeout: float) -> None:
    """Execute ``path`` with its working directory in ``stage/notebooks`` and strip the volatile metadata of the
    executed copy; raise :class:`NotebookFailed`. Writes nothing outside ``stage`` (and ``build/failed``)."""
    import nbformat

    out_nb = stage / "notebooks" / path.name
    _run_papermill(path, out_nb, values, root, timeout)
    nb = nbformat.read(str(out_nb), as_version=4)
    nbformat.write(strip_volatile_metadata(nb), str(out_nb))


def _publish(path: Path, stage: Path, dest: Path, force: bool, seconds: float) -> RunResult:
    """Move the staged outputs of ``path`` that differ beyond tolerance (all if ``force``) into ``dest``."""
    files, deviations = _to_publish(stage, dest, force)
    written = promote(stage, dest, files)
    return RunResult(path.stem, "ok", seconds, dest, written, deviations=deviations)


def _execute(path: Path, values: dict, dest: Path, root: Path, timeout: float, force: bool = False) -> RunResult:
    dest = prepare_output(dest)
    stage = new_stage(dest)
    start = time.perf_counter()
    try:
        _stage_notebook(path, values, stage, root, timeout)
        return _publish(path, stage, dest, force, time.perf_counter() - start)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _stage_in_worker(path: Path, values: dict, stage: Path, root: Path, timeout: float) -> tuple[str, float]:
    """:func:`_stage_notebook` in a worker process: ``(error, seconds)``, the error "" when the notebook ran."""
    start = time.perf_counter()
    try:
        _stage_notebook(path, values, stage, root, timeout)
        return "", time.perf_counter() - start
    except NotebookFailed as exc:
        return str(exc), time.perf_counter() - start


def _execute_parallel(plan: list, dest: Path, root: Path, timeout: float, force: bool, jobs: int,
                      stop_on_error: bool, bar) -> list[RunResult]:
    """Run the notebooks of ``plan`` (``[(path, values)]``) ``jobs`` at a time, each in a spawned worker process.

    ``dest`` is the prepared destination (:func:`prepare_output`). Only this process touches it: it gives every
    run its own stage (owned by this process, so a concurrent :func:`~reluflow.pipeline.promote.recover` leaves it
    alone) and publishes each finished notebook as it comes, exactly as a serial run does. Results are in ``plan``
    order. After a failure with ``stop_on_error`` the runs not yet started are cancelled and those under way are not
    published.
    """
    from concurrent.futures import as_completed

    stages: dict[int, Path] = {}
    done: dict[int, RunResult] = {}
    try:
        with spawn_pool(min(jobs, len(plan))) as pool:
            futures = {}
            for i, (path, values) in enumerate(plan):
                stages[i] = new_stage(dest)
                futures[pool.submit(_stage_in_worker, path, values, stages[i], root, timeout)] = i
            for future in as_completed(futures):
                i = futures[future]
                path = plan[i][0]
                error, seconds = future.result()
                if error:
                    done[i] = RunResult(path.stem, "failed", seconds, dest, error=error)
                else:
                    done[i] = _publish(path, stages[i], dest, force, seconds)
                shutil.rmtree(stages.pop(i), ignore_errors=True)
                bar.set_postfix_str(path.stem)
                bar.update()
                if error and stop_on_error:
                    break
    finally:
        for stage in stages.values():
            shutil.rmtree(stage, ignore_errors=True)
    return [done[i] for i in sorted(done)]


@contextlib.contextmanager
def spawn_pool(jobs: int):
    """A ProcessPoolExecutor of ``jobs`` spawned workers (spawn, not fork: the parent may hold threads, a progress
    bar's or a test runner's). Leaving the block, by an error or an interrupt too, cancels the runs not yet
    started and waits for those under way."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def check_jobs(jobs) -> int:
    """How many notebook runs go at once: an integer >= 1."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ParameterError(f"jobs must be an integer >= 1; got {jobs!r}")
    return jobs


@functools.cache
def _kernel_manager_class():
    """The kernel manager of every run (one class, made on first use), nbclient's default with two changes:

    - on POSIX its kernels talk over IPC (Unix sockets named after their own connection file) instead of TCP ports
      on 127.0.0.1, so concurrent runs cannot pick the same port and a kernel does not warn about unencrypted TCP
      at every start;
    - shutting a kernel down does not interrupt it first (jupyter_client sends SIGINT before the shutdown request;
      a kernel still handling a message then logs "KeyboardInterrupt caught in kernel" on the terminal). A kernel
      that is still busy, after a cell timeout, is killed once the shutdown request goes unanswered.
    """
    from jupyter_client import AsyncKernelManager
    from traitlets import default

    class RunKernelManager(AsyncKernelManager):
        @default("transport")
        def _default_transport(self):
            return "ipc" if os.name == "posix" else "tcp"

        async def _async_interrupt_kernel(self):
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return RunKernelManager


def _run_papermill(path: Path, out_nb: Path, values: dict, root: Path, timeout: float) -> None:
    """Execute ``path`` into ``out_nb`` (its folder is the kernel's working directory); raise NotebookFailed.

    A kernel that dies before any cell ran is restarted up to :data:`KERNEL_START_RETRIES` times; a failing cell, a
    timeout or a kernel that dies later is not retried. The failed copy is kept under ``build/failed``.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    for attempt in range(KERNEL_START_RETRIES + 1):
        try:
            with _kernel_environment():
                papermill.execute_notebook(
                    str(path), str(out_nb), parameters=values, kernel_name=KERNEL, cwd=str(out_nb.parent),
                    progress_bar=False, log_output=False, request_save_on_cell_execute=False,
                    execution_timeout=timeout, kernel_manager_class=_kernel_manager_class(),
                )
            return
        except PapermillExecutionError as exc:
            saved = _keep_failed(out_nb, root, path.name)
            raise NotebookFailed(path.stem, exc.cell_index, f"{exc.ename}: {exc.evalue}", saved,
                                 exec_count=exc.exec_count) from None
        except Exception as exc:  # kernel death, timeouts, missing kernel
            if attempt < KERNEL_START_RETRIES and "Kernel died" in str(exc) and not _cells_started(out_nb):
                out_nb.unlink(missing_ok=True)
                continue
            saved = _keep_failed(out_nb, root, path.name)
            raise NotebookFailed(path.stem, None, f"{type(exc).__name__}: {exc}", saved) from None


#: A kernel that dies before running any cell (seen when two runs start kernels at the same moment: the
#: launcher's ports collide) is a fault of the machinery, not of the notebook: such a start is retried this often,
#: by every caller of :func:`run_notebook` (``reproduce``, ``check``, ``seeds``).
KERNEL_START_RETRIES = 2


def _cells_started(out_nb: Path) -> bool:
    """Whether the (partial) executed copy shows any code cell that ran; False when there is no copy."""
    import nbformat

    try:
        nb = nbformat.read(str(out_nb), as_version=4)
    except Exception:  # missing or half-written: nothing ran that we can see
        return False
    return any(c.get("cell_type") == "code" and c.get("execution_count") is not None for c in nb.cells)


def _keep_failed(out_nb: Path, root: Path, filename: str) -> Path | None:
    if not out_nb.exists():
        return None
    failed = root / "build" / "failed"
    failed.mkdir(parents=True, exist_ok=True)
    target = failed / filename
    shutil.copyfile(out_nb, target)
    return target


def reproduce(names=None, *, profile: str = "paper", parameters: dict | None = None, output_dir=None, root=None,
              timeout: float = DEFAULT_TIMEOUT, progress: bool | None = None, stop_on_error: bool = True,
              stream=None, force: bool = False, jobs: int = 1) -> list[RunResult]:
    """Execute notebooks (all of them by default) and print a summary.

    All parameter overrides are checked for every selected notebook before any kernel starts.
    Returns one :class:`RunResult` per notebook attempted; a failure is recorded with status
    ``"failed"`` and, when ``stop_on_error`` (the default), ends the run. Only outputs that differ from
    the existing files beyond tolerance are rewritten, unless ``force``; each result carries the
    deviation of every artefact from the existing file.

    With ``jobs=k`` up to k notebooks run at once, each in its own worker process with its own kernel (one BLAS
    thread unless the caller set one, as in a serial run), so every artefact is the same for any ``jobs``; this
    process alone publishes the outputs, one notebook at a time. Leave the kernels at one thread when
    ``jobs > 1``: on a 2-core machine two processes with two OpenBLAS threads each ran a matrix-product loop
    in 37.8 s, against 6.9 s with one thread each (idle threads spin), and a ``check`` of every notebook at
    ``jobs=2`` with two threads per kernel went past the cell timeout in notebook 10.
    """
    from tqdm.auto import tqdm

    timeout = check_timeout(timeout)
    jobs = check_jobs(jobs)
    stream = stream if stream is not None else sys.stdout
    root = project_root(root)
    paths = [resolve_notebook(n, root) for n in names] if names else list_notebooks(root)
    if not paths:
        raise ParameterError(f"no notebooks found under {root / 'notebooks'}")
    prof = load_profile(profile, root)
    plan = []
    for p in paths:  # validate everything first
        overrides = {**prof.get(p.stem, {}), **(parameters or {})}
        plan.append((p, coerce_parameters(p, overrides)))
    dest = Path(output_dir) if output_dir is not None else _default_output(root, profile, parameters or {})
    dest = prepare_output(dest)  # refuse an unwritable destination before any kernel starts
    results: list[RunResult] = []
    disable = None if progress is None else not progress  # None: show only on a terminal
    bar = tqdm(total=len(plan), desc="reproduce", unit="notebook", disable=disable, file=sys.stderr)
    start = time.perf_counter()
    try:
        if jobs > 1 and len(plan) > 1:
            results = _execute_parallel(plan, dest, root, timeout, force, jobs, stop_on_error, bar)
        else:
            for p, values in plan:
                bar.set_postfix_str(p.stem)
                t0 = time.perf_counter()
                try:
                    results.append(_execute(p, values, dest, root, timeout, force=force))
                except NotebookFailed as exc:
                    results.append(RunResult(p.stem, "failed", time.perf_counter() - t0, dest, error=str(exc)))
                    if stop_on_error:
                        break
                finally:
                    bar.update()
    finally:
        bar.close()
    print(format_summary(results, wall=time.perf_counter() - start if jobs > 1 else None), file=stream)
    return results


def check(names=None, *, root=None, timeout: float = DEFAULT_TIMEOUT, progress: bool | None = None,
          stream=None, scratch=None, jobs: int = 1) -> tuple[bool, list]:
    """Re-execute notebooks (paper profile) into scratch and compare every artefact with the committed one.

    Prints, per artefact, its largest deviation as a ratio to its tolerance (:mod:`reluflow.pipeline.compare`)
    and returns ``(agrees, deviations)``: ``agrees`` is False if a notebook failed, an artefact differs beyond
    tolerance, or a committed artefact was not produced. The repository is not written; the fresh
    artefacts stay in ``scratch`` if one is given (else a temporary folder, removed afterwards). ``jobs`` runs
    that many notebooks at once, as in :func:`reproduce`.
    """
    from reluflow.pipeline.compare import compare_artefact

    stream = stream if stream is not None else sys.stdout
    root = project_root(root)
    tmp = None if scratch is not None else tempfile.mkdtemp(prefix="reluflow-check-")
    out = Path(scratch if scratch is not None else tmp)
    try:
        results = reproduce(names, root=root, timeout=timeout, progress=progress, stream=io.StringIO(),
                            stop_on_error=False, force=True, output_dir=out, jobs=jobs)
        ok = all(r.status == "ok" for r in results)
        prefixes = {r.name.split("_")[0] for r in results}
        deviations = []
        lines = [f"{'artefact':<44} {'kind':<8} {'deviation/tol':>13}  detail", "-" * 90]
        for r in results:
            if r.status != "ok":
                lines.append(f"{r.name:<44} {'failed':<8} {'':>13}  {r.error}")
        for sub in SUBFOLDERS:
            names_ = {p.name for d in (root / sub, out / sub) if d.is_dir() for p in d.iterdir()
                      if p.is_file() and p.name.split("_")[0] in prefixes}
            for name in sorted(names_):
                committed, fresh = root / sub / name, out / sub / name
                if not fresh.exists():
                    ok = False
                    lines.append(f"{name:<44} {'missing':<8} {'':>13}  committed but not produced")
                    continue
                d = compare_artefact(committed, fresh)
                deviations.append(d)
                ok &= d.agrees
                lines.append(f"{name:<44} {d.kind:<8} {d.ratio:>13.3g}  {'ok' if d.agrees else 'DIFFERS'}: {d.detail}")
        lines.append("all artefacts agree within tolerance" if ok else "DIFFERENCES beyond tolerance")
        print("\n".join(lines), file=stream)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return ok, deviations


def format_summary(results: list[RunResult], wall: float | None = None) -> str:
    """A plain-text table: notebook, status, seconds, files written; ``wall``, when given (runs that went at
    once), is the elapsed time, printed beside the sum of the notebooks' seconds."""
    width = max([len("notebook")] + [len(r.name) for r in results])
    lines = [f"{'notebook':<{width}}  {'status':<6}  {'seconds':>7}  files written", "-" * (width + 34)]
    for r in results:
        lines.append(f"{r.name:<{width}}  {r.status:<6}  {r.seconds:7.1f}  {len(r.written)}")
    total = sum(r.seconds for r in results)
    n_ok = sum(r.status == "ok" for r in results)
    took = f"{total:.1f} s" if wall is None else f"{total:.1f} s of runs, {wall:.1f} s elapsed"
    lines.append(f"{n_ok}/{len(results)} notebooks ok in {took}; outputs under {results[0].output_root}"
                 if results else "no notebooks run")
    for r in results:
        if r.error:
            lines.append(f"error: {r.error}")
    return "\n".join(lines)
