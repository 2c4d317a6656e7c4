"""The notebook pipeline: parameters, failures, the fast profile, and the published artefacts.

These tests execute notebooks through papermill, always into temporary folders: they never write
into the repository's data/, figures/ or notebooks/.
"""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from reluflow.pipeline import runner as pl
from reluflow.results.netcdf import load_result

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = pl.list_notebooks(ROOT)
#: Notebook runs at once in the long tests: one per core, two at least (the outputs do not depend on it), four at
#: most.
JOBS = max(2, min(4, os.cpu_count() or 1))
REQUIRED_ATTRS = ("Conventions", "title", "source", "references", "notebook", "parameters")


def cli(*args):
    return subprocess.run([sys.executable, "-m", "reluflow", *args], capture_output=True, text=True, cwd=ROOT)


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_there_are_notebooks_and_each_has_a_seed():
    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        params = pl.notebook_parameters(path)
        assert params["seed"]["type"] == "int", path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_line_of_the_parameters_cell_is_a_parameter(path):
    # papermill silently drops lines it cannot parse (e.g. a comment containing '='); catch that
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = [line.split("=")[0].strip() for line in cell.source.splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert assigned == list(pl.notebook_parameters(path)), path.name


def test_list_shows_parameters_with_defaults_and_types():
    res = cli("list")
    assert res.returncode == 0, res.stderr
    assert "01_truncation_maps" in res.stdout
    assert "seed" in res.stdout and ": int   = 0" in res.stdout
    assert "widths" in res.stdout and "list" in res.stdout


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["-p", "sed", "3"], "unknown parameter 'sed'; parameters are: seed"),
        (["-p", "seed", "three"], "parameter 'seed' expects int (default 0); got 'three'"),
        (["-p", "seed", "1.5"], "parameter 'seed' expects int"),
        (["-p", "widths", "[2, 'a']"], "parameter 'widths' expects list"),
        (["--profile", "huge"], "invalid choice: 'huge'"),
    ],
)
def test_bad_parameters_are_refused_before_any_kernel_starts(args, match):
    res = cli("run", "01_truncation_maps", *args)
    assert res.returncode == 2
    assert match in res.stderr


def test_refusal_happens_before_execution(monkeypatch, tmp_path):
    import papermill

    def boom(*a, **k):
        raise AssertionError("a kernel was started")

    monkeypatch.setattr(papermill, "execute_notebook", boom)
    with pytest.raises(pl.ParameterError, match="unknown parameter 'nope'"):
        pl.reproduce(parameters={"nope": 1}, output_dir=tmp_path, root=ROOT, progress=False)
    with pytest.raises(pl.ParameterError, match="unknown notebook '99_missing'"):
        pl.run_notebook("99_missing", root=ROOT, output_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_value_coercion_from_strings_and_profiles():
    path = pl.resolve_notebook("01", ROOT)
    assert pl.coerce_parameters(path, {"seed": "7", "widths": "[2, 3]"}) == {"seed": 7, "widths": [2, 3]}
    assert pl.coerce_parameters(path, {"seed": 7}) == {"seed": 7}
    with pytest.raises(pl.ParameterError, match="expects int"):
        pl.coerce_parameters(path, {"seed": True})
    fast = pl.load_profile("fast", ROOT)
    for name, overrides in fast.items():
        pl.coerce_parameters(pl.resolve_notebook(name, ROOT), overrides)  # the shipped profile is valid


def test_a_failing_run_leaves_previous_outputs_untouched(tmp_path):
    # a previous, complete set of outputs
    for sub in ("data", "figures", "notebooks"):
        shutil.copytree(ROOT / sub, tmp_path / sub, ignore=shutil.ignore_patterns("profiles"))
    before = snapshot(tmp_path)
    with pytest.raises(pl.NotebookFailed) as info:
        pl.run_notebook("01_truncation_maps", parameters={"seed": -1}, output_dir=tmp_path, root=ROOT)
    message = str(info.value)
    # cell 2 is the injected-parameters cell; cell 3 validates the parameters
    assert "notebook 01_truncation_maps failed in cell 3 (In [3])" in message
    assert "parameter 'seed' must lie in [0, inf]; got -1" in message
    assert snapshot(tmp_path) == before  # nothing replaced, no staging folder left
    res = cli("run", "01", "-p", "seed", "-1", "--output-dir", str(tmp_path))
    assert res.returncode == 1 and "failed in cell 3" in res.stderr
    assert snapshot(tmp_path) == before


def _check_artefacts(out: Path, names):
    for name in names:
        nb = nbformat.read(out / "notebooks" / f"{name}.ipynb", as_version=4)
        text = json.dumps(nb)
        assert "start_time" not in text and "duration" not in text, f"{name}: volatile metadata left"
        assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        checks = [line for c in nb.cells if "nbval-check-output" in c.metadata.get("tags", [])
                  for o in c.outputs if o.output_type == "stream" for line in o.text.splitlines()
                  if line.startswith("check_")]
        assert checks, f"{name}: no check lines"
        assert all(": True" in line for line in checks), checks
    for nc in (out / "data").glob("*.nc"):
        ds = load_result(nc)
        for attr in REQUIRED_ATTRS:
            assert isinstance(ds.attrs.get(attr), str) and ds.attrs[attr], f"{nc.name}: attribute {attr}"
        json.loads(ds.attrs["parameters"])
        for var in ds.data_vars.values():
            assert "long_name" in var.attrs and "units" in var.attrs, f"{nc.name}:{var.name}"
    for png in (out / "figures").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fast_profile_reproduce_into_a_temporary_folder(tmp_path):
    out = tmp_path / "fast"
    # JOBS notebooks at once (the outputs do not depend on jobs: see the test above; by hand, the whole fast
    # profile with jobs=1 and jobs=2 gave byte-identical trees)
    results = pl.reproduce(profile="fast", output_dir=out, root=ROOT, progress=False, jobs=JOBS)
    assert [r.status for r in results] == ["ok"] * len(NOTEBOOKS)
    names = [p.stem for p in NOTEBOOKS]
    _check_artefacts(out, names)
    # every published artefact has a fast counterpart with the same schema
    assert {p.name for p in (ROOT / "data").glob("*.nc")} <= {p.name for p in (out / "data").glob("*.nc")}
    assert {p.name for p in (ROOT / "figures").glob("*.png")} <= {p.name for p in (out / "figures").glob("*.png")}
    # rerunning changes no file
    before = snapshot(out)
    again = pl.reproduce(profile="fast", output_dir=out, root=ROOT, progress=False, jobs=JOBS)
    assert all(r.written == [] for r in again)
    assert snapshot(out) == before


#: Three one-cell notebooks: two print a seed-dependent line (their executed copy is their artefact), the third raises.
TOY_NOTEBOOKS = {stem: [("seed = 0", ["parameters"]), (body, [])]
                 for stem, body in [("01_a", "print(f'a {seed * 7}')"), ("02_b", "print(f'b {seed + 1}')"),
                                    ("03_bad", "raise ValueError('03 is bad')")]}


def test_parallel_reproduce_publishes_the_same_files_as_a_serial_one(tmp_path, toy_project):
    """Oracle: the serial run of the same toy project. ``jobs=2`` must give the same statuses, errors and files,
    byte for byte, leave no stage behind, and a rerun must write nothing."""
    root = toy_project(tmp_path / "project", TOY_NOTEBOOKS)
    runs = {}
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        results = pl.reproduce(root=root, output_dir=out, parameters={"seed": 3}, progress=False,
                               stop_on_error=False, stream=io.StringIO(), jobs=jobs)
        runs[jobs] = ([(r.name, r.status, r.error.split(" (executed copy")[0], len(r.written)) for r in results],
                      snapshot(out))
    assert runs[2] == runs[1]
    statuses = [(name, status) for name, status, _, _ in runs[1][0]]
    assert statuses == [("01_a", "ok"), ("02_b", "ok"), ("03_bad", "failed")]
    assert "03 is bad" in runs[1][0][2][2]
    assert '"a 21' in runs[1][1]["notebooks/01_a.ipynb"].decode()  # the seed reached the kernel
    assert not [p for p in (tmp_path / "jobs2").iterdir() if p.name.startswith(".staging")]
    again = pl.reproduce(["01", "02"], root=root, output_dir=tmp_path / "jobs2", parameters={"seed": 3},
                         progress=False, stream=io.StringIO(), jobs=2)
    assert [r.written for r in again] == [[], []] and snapshot(tmp_path / "jobs2") == runs[1][1]
    for jobs in (0, -2, True, 2.0):
        with pytest.raises(pl.ParameterError, match="jobs must be an integer >= 1"):
            pl.reproduce(root=root, output_dir=tmp_path / "x", jobs=jobs)


def test_committed_artefacts_match_what_the_notebooks_produce_with_another_thread_count_and_blas_core(tmp_path):
    """``reluflow check`` at paper scale, as on another machine: a BLAS thread count other than the one the
    files were made with, and OpenBLAS forced to the kernels of another CPU generation (Nehalem: SSE only,
    where the files were made with the AVX-512 kernels; every x86-64 CPU runs them, and OpenBLAS builds for
    other architectures ignore the name). Both change the round-off of every matrix product. Every committed
    artefact must agree with a fresh one within the tolerances of reluflow.pipeline.compare, and every fresh
    artefact passes the schema checks. The notebooks run one at a time: two at once with two BLAS threads each
    oversubscribe two cores (see reluflow.pipeline.runner.reproduce)."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2",
           "OPENBLAS_CORETYPE": "Nehalem"}
    res = subprocess.run([sys.executable, "-c", "import sys; from reluflow.pipeline import runner as pl; "
                          f"ok, _ = pl.check(scratch={str(tmp_path)!r}); sys.exit(0 if ok else 1)"],
                         capture_output=True, text=True, cwd=ROOT, env=env)
    print(res.stdout)
    differs = sorted({line.split()[0] for line in res.stdout.splitlines()
                      if "DIFFERS" in line or " failed " in line or " missing " in line})
    assert not differs and res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    _check_artefacts(tmp_path, [p.stem for p in NOTEBOOKS])


def test_check_reports_a_real_difference(tmp_path):
    """Negative control: a committed result altered beyond tolerance makes ``check`` fail and name it."""
    root = tmp_path / "repo"
    for sub in ("notebooks", "data", "figures"):
        shutil.copytree(ROOT / sub, root / sub)
    path = root / "data" / "01_truncation_maps.nc"
    ds = load_result(path)
    # a variable of real size (not one that records round-off, all below 1e-8, which compare treats as such)
    var = next(v for v in ds.data_vars if ds[v].dtype.kind == "f" and ds[v].size and float(abs(ds[v]).max()) > 1e-6)
    ds[var] = ds[var] * 1.01
    path.unlink()
    ds.to_netcdf(path)
    out = []

    class Stream:
        def write(self, text):
            out.append(text)

    ok, deviations = pl.check(["01"], root=root, stream=Stream())
    text = "".join(out)
    assert not ok and "01_truncation_maps.nc" in text and "DIFFERS" in text
    assert [d.path for d in deviations if not d.agrees] == ["01_truncation_maps.nc"]


def test_kernels_get_one_blas_thread_unless_the_caller_chose(monkeypatch):
    """Oracle: os.environ as the kernel would inherit it, inside and after the context."""
    from reluflow.pipeline import runner

    for k in runner.KERNEL_THREADS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    with runner._kernel_environment():
        import os
        assert os.environ["OPENBLAS_NUM_THREADS"] == "1" and os.environ["MKL_NUM_THREADS"] == "1"
        assert os.environ["OMP_NUM_THREADS"] == "2"   # the caller's choice is kept
    assert "OPENBLAS_NUM_THREADS" not in os.environ and os.environ["OMP_NUM_THREADS"] == "2"


def test_committed_notebook_outputs_name_no_path_of_this_machine():
    """A warning that prints an absolute path makes a notebook's outputs differ between checkouts (06 did)."""
    path_like = re.compile(r"(?:/[\w.-]+)+/reluflow/")
    for nb_path in NOTEBOOKS:
        nb = nbformat.read(nb_path, as_version=4)
        for i, c in enumerate(nb.cells):
            for o in c.get("outputs", []):
                text = o.get("text", "") if o.output_type == "stream" else ""
                assert not path_like.search(text), f"{nb_path.name} cell {i}: {text[:200]}"


def test_a_cell_timeout_fails_the_notebook_and_its_busy_kernel_is_stopped(tmp_path, toy_project):
    """A cell still running at the timeout: the notebook fails with a timeout error, the busy kernel (which the
    runner's kernel manager does not interrupt on shutdown) is killed, and the next notebook still runs."""
    root = toy_project(tmp_path / "project", {
        "01_slow": [("seed = 0", ["parameters"]), ("import time\ntime.sleep(60)", [])],
        "02_quick": [("seed = 0", ["parameters"]), ("print('quick')", [])]})
    t0 = time.perf_counter()
    results = pl.reproduce(root=root, output_dir=tmp_path / "out", timeout=3, progress=False, stop_on_error=False,
                           stream=io.StringIO())
    seconds = time.perf_counter() - t0
    assert [(r.name, r.status) for r in results] == [("01_slow", "failed"), ("02_quick", "ok")]
    assert "Timeout" in results[0].error or "timed out" in results[0].error, results[0].error
    assert seconds < 40, seconds  # far less than the 60 s sleep: the busy kernel did not have to finish its cell
