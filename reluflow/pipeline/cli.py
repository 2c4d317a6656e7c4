"""The ``reluflow`` command: list, run and reproduce the notebooks.

    reluflow list
    reluflow run 01_truncation_maps -p seed 3
    reluflow reproduce [--only NAME]... [--profile fast|paper] [--jobs K]
    reluflow check [--only NAME]... [--jobs K]
    reluflow seeds --from A --to B [--jobs K]
    reluflow site [--output-dir DIR] [--serve [--port PORT]]
"""

from __future__ import annotations

import argparse
import sys

from reluflow import __version__
from reluflow.pipeline import runner as pl


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=pl.PROFILES, default="paper",
                   help="parameter profile: 'paper' (the notebooks' defaults) or 'fast' (smoke run); default paper")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("KEY", "VALUE"), default=[],
                   help="override a notebook parameter (repeatable); the value is parsed as a Python literal")
    p.add_argument("--output-dir", default=None,
                   help="where notebooks/, data/, figures/ are written (default: the repository for paper runs "
                        "without -p, build/fast for --profile fast, build/custom with -p)")
    p.add_argument("--timeout", type=float, default=pl.DEFAULT_TIMEOUT, help="per-cell timeout in seconds")
    p.add_argument("--force", action="store_true",
                   help="rewrite every output, even those that agree with the existing file within tolerance")
    p.add_argument("--root", default=None, help=argparse.SUPPRESS)


def _overrides(pairs) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise pl.ParameterError(f"parameter {key!r} given twice")
        out[key] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reluflow",
        description="Run the reluflow notebooks (companion to arXiv:2501.07400) through papermill.",
    )
    parser.add_argument("--version", action="version", version=f"reluflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the notebooks with their parameters, defaults and types")
    run = sub.add_parser("run", help="execute one notebook")
    run.add_argument("name", help="notebook name, e.g. 01_truncation_maps or 01")
    _add_common(run)
    rep = sub.add_parser("reproduce", help="execute every notebook (one after another unless --jobs)")
    rep.add_argument("--only", action="append", metavar="NAME", default=None,
                     help="run only this notebook (repeatable)")
    rep.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    rep.add_argument("--jobs", type=int, default=1, metavar="K",
                     help="notebooks at once, each in its own process; the outputs do not depend on it (default 1)")
    _add_common(rep)
    chk = sub.add_parser("check", help="re-execute the notebooks in scratch and compare every artefact with the "
                                       "committed one, within the tolerances of reluflow.pipeline.compare")
    chk.add_argument("--only", action="append", metavar="NAME", default=None,
                     help="check only this notebook (repeatable)")
    chk.add_argument("--timeout", type=float, default=pl.DEFAULT_TIMEOUT, help="per-cell timeout in seconds")
    chk.add_argument("--jobs", type=int, default=1, metavar="K",
                     help="notebooks at once, each in its own process (default 1)")
    chk.add_argument("--root", default=None, help=argparse.SUPPRESS)
    sds = sub.add_parser("seeds", help="run the notebooks over a range of seeds and print the pass rate of every check")
    sds.add_argument("--from", dest="first", type=int, default=0, help="first seed (default 0)")
    sds.add_argument("--to", dest="last", type=int, default=9, help="last seed, inclusive (default 9)")
    sds.add_argument("--only", action="append", metavar="NAME", default=None,
                     help="run only this notebook (repeatable)")
    sds.add_argument("--profile", choices=pl.PROFILES, default=None, help="parameter profile (default fast)")
    sds.add_argument("--timeout", type=float, default=pl.DEFAULT_TIMEOUT, help="per-cell timeout in seconds")
    sds.add_argument("--log", default=None, metavar="FILE",
                     help="append each finished run to FILE as a JSON line (a split or stopped sweep loses nothing)")
    sds.add_argument("--tabulate", nargs="+", default=None, metavar="FILE",
                     help="run nothing: print the table of the runs in these --log files (with --profile if they mix)")
    sds.add_argument("--jobs", type=int, default=1, metavar="K",
                     help="runs at once, each in its own process with one BLAS thread (default 1)")
    sds.add_argument("--root", default=None, help=argparse.SUPPRESS)
    ste = sub.add_parser("site", help="build the browsable site of the executed notebooks into build/site "
                                      "(never executes them); --serve serves it on 127.0.0.1")
    ste.add_argument("--output-dir", default=None, help="where the site is written (default build/site)")
    ste.add_argument("--serve", action="store_true",
                     help="serve the site on http://127.0.0.1:PORT/ (builds it first if it is missing)")
    ste.add_argument("--port", type=int, default=8000, help="port for --serve (default 8000; 0 picks a free one)")
    ste.add_argument("--root", default=None, help=argparse.SUPPRESS)
    return parser


def cmd_list(args) -> int:
    notebooks = pl.list_notebooks(getattr(args, "root", None))
    if not notebooks:
        print("no notebooks found")
        return 1
    for path in notebooks:
        print(path.stem)
        params = pl.notebook_parameters(path)
        width = max((len(n) for n in params), default=0)
        for name, spec in params.items():
            help_text = f"  # {spec['help']}" if spec["help"] else ""
            print(f"    {name:<{width}} : {spec['type']:<5} = {spec['default']!r}{help_text}")
    return 0


def cmd_run(args) -> int:
    res = pl.run_notebook(args.name, parameters=_overrides(args.parameter), profile=args.profile,
                          output_dir=args.output_dir, root=args.root, timeout=args.timeout, force=args.force)
    print(pl.format_summary([res]))
    return 0


def cmd_reproduce(args) -> int:
    results = pl.reproduce(args.only, profile=args.profile, parameters=_overrides(args.parameter),
                           output_dir=args.output_dir, root=args.root, timeout=args.timeout,
                           progress=False if args.no_progress else None, force=args.force, jobs=args.jobs)
    return 0 if results and all(r.status == "ok" for r in results) else 1


def cmd_check(args) -> int:
    agrees, _ = pl.check(args.only, root=args.root, timeout=args.timeout, jobs=args.jobs)
    return 0 if agrees else 1


def cmd_seeds(args) -> int:
    from reluflow.pipeline.seeds import seed_sweep, table_from_logs

    if args.tabulate:
        table = table_from_logs(args.tabulate, profile=args.profile)
        print(table.format())
        return 0 if table.all_pass else 1
    if args.first < 0 or args.last < args.first:
        raise pl.ParameterError(f"seeds: need 0 <= --from <= --to; got --from {args.first} --to {args.last}")
    table = seed_sweep(args.only, seeds=range(args.first, args.last + 1), profile=args.profile or "fast",
                       root=args.root, timeout=args.timeout, log=args.log, jobs=args.jobs)
    return 0 if table.all_pass else 1


def cmd_site(args) -> int:
    from pathlib import Path

    from reluflow.pipeline import site

    # the checkout: --root, else the current folder when it is one (make site), else the package's own
    cwd = Path.cwd()
    root = Path(args.root) if args.root else cwd if (cwd / "docs" / "conf.py").exists() else site.ROOT
    out = Path(args.output_dir) if args.output_dir else root / site.DEFAULT_OUTPUT
    if not args.serve or not (out / "index.html").exists():
        try:
            build = site.build_site(out, root)
        except (site.SiteError, ValueError) as exc:
            print(f"reluflow: error: {exc}", file=sys.stderr)
            return 1
        print(f"site: {len(build.pages)} pages in {build.output_dir} ({build.seconds:.1f} s, "
              f"{len(build.warnings)} Sphinx warnings)")
    if args.serve:
        try:
            server = site.serve_site(out, args.port, quiet=False)
        except (ValueError, OSError) as exc:
            print(f"reluflow: error: {exc}", file=sys.stderr)
            return 1
        host, port = server.server_address[:2]
        print(f"serving {out} on http://{host}:{port}/ (Ctrl-C stops)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"list": cmd_list, "run": cmd_run, "reproduce": cmd_reproduce, "check": cmd_check,
               "seeds": cmd_seeds, "site": cmd_site}[args.command]
    try:
        return handler(args)
    except (pl.ParameterError, pl.NotebookFailed, pl.OutputError, FileNotFoundError) as exc:
        print(f"reluflow: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, pl.ParameterError) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
