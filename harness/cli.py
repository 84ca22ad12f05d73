"""``harness``: compare run reports, show their history, list the gates.

    harness compare BASELINE CURRENT   compare two runs (folders or their results.json); BASELINE may
                                       also be a folder of runs: the newest earlier one with CURRENT's key
    harness history DIR                a trend table of the runs in DIR, drawn into DIR/history.html
    harness merge RUN... [--out DIR]   one verdict from the runs of many hosts, and from the shards of one run
                                       (--harness-shard): DIR/summary.md and DIR/merged.json
    harness gates                      every gate: its default, its value in this project and where it comes from
    harness build --model=PATH         build (or find) the model in the cache and print its folder, for a run on
                                       another machine: pytest --model=FOLDER --reference=SOURCE

Exit codes:
    0  no regression: every metric within its limit (and with --inconclusive=warn, the default, some inconclusive:
       each is listed); with --no-baseline-ok also a comparison that compared nothing (no baseline yet, key
       properties that differ, no metric in common: the reason is printed)
    1  a regression: a check that passed in the baseline fails now, or a metric whose whole 95% interval is worse
       than its threshold; with --inconclusive=fail also an inconclusive metric. For merge: a check that fails on
       some host or was not run on every host, a run that did not finish or regressed, a shard missing
    2  usage error, one line on stderr: bad arguments, a missing, unreadable or empty baseline or run, one that does
       not follow the results schema (the line names the field), a run compared with itself, a --plot or --out
       folder that does not exist or cannot be written, or a comparison that compared nothing (without
       --no-baseline-ok)
    3  internal error: a bug in the harness (the traceback is printed); bad input never exits 3

A closed pipe (``harness compare A B | head -1``) is not an error: the exit code stays the verdict's.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import string
import sys
import tomllib
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

from harness import __version__, system
from harness.checks.timing import VERDICTS
from harness.errors import HarnessError, one_line
from harness.fsutil import write_text_atomic
from harness.report import digest
from harness.report.compare import (
    KEY_LABELS,
    METRICS,
    MIN_ROUNDS,
    Thresholds,
    compare_runs,
    markdown,
    pick_baseline,
    same_run,
)
from harness.report.history_page import render_history
from harness.report.runs import RESULTS_FILE, Run, find_runs, load_run
from harness.text import clip

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
DEFAULT_HISTORY_METRICS = ("decode_tokens_per_s", "ttft_s")
SPARKS = "▁▂▃▄▅▆▇█"
ASCII_SPARKS = "_.-=*#"  # where stdout cannot encode SPARKS (Windows' cp1252, redirected into a CI step's file)
RUN_NAME_WIDTH = 40  # characters of a run's name in the history table (history.html has them whole)


class UsageError(HarnessError):
    """Bad input to the command line: printed as one line, exit code 2."""


Output = tuple[int, list[str]]  # a command's exit code and the lines it prints on stdout


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in one line (``harness compare: argument --last: ...``), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {' '.join(message.split())} (`{self.prog} --help` lists the arguments)\n")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{clip(text, 40)!r} is not a number; write a fraction such as 0.1 for "
                                         "10%") from None
    if not 0 < value < 10:  # NaN too
        raise argparse.ArgumentTypeError(f"{clip(text, 40)} is not a fraction above 0 and below 10 (0.1 means 10%)")
    return value


def _points(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{clip(text, 40)!r} is not a number; write percentage points such as "
                                         "15") from None
    if not 0 <= value <= 100:  # NaN too
        raise argparse.ArgumentTypeError(f"{clip(text, 40)} is not between 0 and 100 percentage points")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{clip(text, 40)!r} is not a whole number; write a count, such as "
                                         "10") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{clip(text, 40)} is not 1 or more; leave the option out for no limit")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description=__doc__.split("\n\n")[0],
                     epilog="exit codes: 0 no regression, 1 regression, 2 usage error or nothing compared, 3 internal "
                            "error",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    compare = commands.add_parser("compare", help="compare a run with a baseline run")
    compare.add_argument("baseline", type=Path, help="run folder, its results.json, or a folder of runs")
    compare.add_argument("current", type=Path, help="run folder or its results.json")
    defaults = Thresholds()
    compare.add_argument("--timing-threshold", type=_fraction, default=defaults.timing, metavar="FRACTION",
                         help=f"largest worsening of a token metric beyond the noise (default {defaults.timing})")
    compare.add_argument("--quality-threshold", type=_fraction, default=defaults.quality, metavar="FRACTION",
                         help=f"largest worsening of a quality score (default {defaults.quality})")
    compare.add_argument("--busy-limit", type=_points, default=defaults.busy, metavar="POINTS",
                         help="compare timings only when the CPU other processes used during the two runs' "
                              f"benchmarks differs by at most this many percentage points (default {defaults.busy:g})")
    compare.add_argument("--ignore-key", action="append", default=[], choices=sorted(KEY_LABELS),
                         help="compare even though this key property differs (e.g. model_sha256 to compare two "
                              "fine-tunes; timings across machines stay meaningless)")
    compare.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    compare.add_argument("--all", action="store_true", help="also list the metrics that did not change")
    compare.add_argument("--no-baseline-ok", action="store_true",
                         help="a comparison that compares nothing (a BASELINE that does not exist or holds no run "
                              "yet, as in a first CI run; runs whose key properties differ; no metric in common) "
                              "exits 0; without it that exits 2 (a mistyped path must not open the gate)")
    compare.add_argument("--inconclusive", choices=("warn", "fail"), default="warn",
                         help="what an inconclusive timing metric (its interval straddles the threshold, too few "
                              "rounds, a machine not equally busy) does to the exit code: warn (0, listed) or "
                              "fail (1)")
    merge = commands.add_parser("merge", help="one verdict from the runs of many hosts, or the shards of a run")
    merge.add_argument("runs", type=Path, nargs="+", metavar="RUN",
                       help="run folders, their results.json, or folders holding runs at any depth (a CI job's "
                            "downloaded artifacts)")
    merge.add_argument("--out", type=Path, default=Path("merged"), metavar="DIR",
                       help="where summary.md and merged.json go (default ./merged; created)")
    merge.add_argument("--hosts", type=_count, default=None, metavar="N",
                       help="fail unless at least N hosts' runs are there (a CI leg that uploaded nothing)")
    history = commands.add_parser("history", help="trend table of the runs in a reports folder")
    history.add_argument("folder", type=Path, help="the reports folder (holds one folder per run)")
    history.add_argument("--metric", action="append", choices=sorted(METRICS), metavar="NAME",
                         help=f"metric to show (repeatable; default decode_tokens_per_s, ttft_s and the quality "
                              f"scores present); one of {', '.join(METRICS)}")
    history.add_argument("--test", default="", metavar="TEXT", help="only checks whose id contains TEXT")
    history.add_argument("--last", type=_count, default=None, metavar="N", help="only the last N runs (N >= 1)")
    history.add_argument("--plot", type=Path, default=None, metavar="FILE",
                         help="where to draw the trends, in an existing folder (default FOLDER/history.html)")
    history.add_argument("--no-plot", action="store_true", help="print the table only")
    gates = commands.add_parser("gates", help="list every gate with its default, value and source")
    gates.add_argument("--pyproject", type=Path, default=None, metavar="FILE",
                       help="the project's pyproject.toml (default: the nearest one above this folder)")
    build = commands.add_parser("build", help="build (or find in the cache) a model and print its folder")
    build.add_argument("--model", required=True, help="Hugging Face folder, GGUF file or peft adapter folder")
    build.add_argument("--base-model", dest="base_model", default=None, metavar="PATH",
                       help="an adapter's base model (default: the one its adapter_config.json names)")
    build.add_argument("--precision", default=None, help="int4 (default), int8, fp16 or fp32")
    build.add_argument("--builder", default=None, help="model-builder (default) or olive")
    build.add_argument("--harness-cache-dir", dest="cache_dir", default=None, metavar="DIR",
                       help="the cache to build into (default: HARNESS_CACHE_DIR, [tool.harness], the user cache)")
    build.add_argument("--harness-memory", dest="memory", default=None, metavar="SIZE",
                       help="the memory the build may use (default: what this machine has available)")
    build.add_argument("--out", type=Path, default=None, metavar="DIR",
                       help="also lay the built files out in DIR (hard links where the disk allows); created "
                            "when missing, in a folder that exists")
    return parser


def _version() -> str:
    from harness.provenance import package_version

    return f"harness {__version__} (onnxruntime-genai {package_version('onnxruntime-genai')})"


@dataclass(frozen=True)
class History:
    """Runs (oldest first) against (metric, check) columns; ``keys`` names each run's key group A, B, ..."""

    runs: list[Run]
    columns: list[tuple[str, str]]
    values: list[list[float | None]]
    keys: list[str]
    legend: dict[str, str]

    def text(self, line_width: int) -> str:
        """The table, with as many metric columns as fit in ``line_width`` characters (the rest are named)."""
        names = [clip(run.name, RUN_NAME_WIDTH, mark_counts=True) for run in self.runs]
        width = max(len(name) for name in names)
        fixed = width + 2 + 5 + 13 + 14
        shown = max(1, min(len(self.columns), (line_width - fixed) // 12)) if self.columns else 0
        head = [f"{'run':{width}}  key  {'verdict':12} passed failed  "
                + "  ".join(f"{f'[{i}]':>10}" for i in range(1, shown + 1))]
        rows = []
        for run, name, key, values in zip(self.runs, names, self.keys, self.values, strict=True):
            totals = run.data.get("totals", {})
            failed = totals.get("failed", 0) + totals.get("error", 0)
            cells = "  ".join(f"{v:>10.4g}" if v is not None else f"{'-':>10}" for v in values[:shown])
            verdict = digest.verdict_of(run.data).word
            rows.append(f"{name:{width}}  {key:3}  {verdict:12} {totals.get('passed', 0):6} {failed:6}  {cells}")
        trend = "  ".join(f"{_sparkline([row[i] for row in self.values]):>10}" for i in range(shown))
        legend = [clip(f"[{i}] {metric}  {test}", line_width, mark_counts=True)
                  for i, (metric, test) in enumerate(self.columns[:shown], start=1)]
        if shown < len(self.columns):
            legend.append(f"(+{len(self.columns) - shown} columns too wide to show: pick with --metric, --test)")
        keys = [clip(f"key {letter}: {text}", line_width, mark_counts=True) for letter, text in self.legend.items()]
        return "\n".join([*head, *rows, f"{'trend':{width}}  {'':3}  {'':12} {'':6} {'':6}  {trend}", "", *legend,
                          *keys])


def _sparkline(values: Sequence[float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return ""
    low, high = min(present), max(present)
    sparks = SPARKS if _encodes(SPARKS) else ASCII_SPARKS
    return "".join(" " if v is None else sparks[round((v - low) / ((high - low) or 1) * (len(sparks) - 1))]
                   for v in values[-10:])


def _encodes(text: str) -> bool:
    """Whether stdout's encoding can write ``text``."""
    try:
        text.encode(getattr(sys.stdout, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _natural(text: str) -> list[str | int]:
    """Sort key that puts prompt=32 before prompt=128."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def history(runs: list[Run], metrics: Sequence[str] | None, test_filter: str) -> History:
    """The trend of each chosen metric of each check, over ``runs``."""
    chosen = list(metrics or [*DEFAULT_HISTORY_METRICS,
                              *(m for m, spec in METRICS.items() if spec.kind == "quality")])
    columns = sorted({(metric, test_id) for run in runs for test_id, test in run.tests().items()
                      for metric in chosen if metric in test.get("metrics", {}) and test_filter in test_id},
                     key=lambda c: (chosen.index(c[0]), _natural(c[1])))
    values = [[run.tests().get(test_id, {}).get("metrics", {}).get(metric) for metric, test_id in columns]
              for run in runs]
    groups: dict[tuple[tuple[str, str], ...], str] = {}
    for run in runs:
        groups.setdefault(tuple(sorted(run.key.items())), string.ascii_uppercase[len(groups) % 26])
    legend = {letter: ", ".join(f"{label} {dict(key)[name][:12] if name == 'model_sha256' else dict(key)[name]}"
                                for name, label in KEY_LABELS.items() if name in dict(key))
              for key, letter in groups.items()}
    return History(runs, columns, values, [groups[tuple(sorted(run.key.items()))] for run in runs], legend)


def _compare(args: argparse.Namespace) -> Output:
    current = load_run(args.current)
    if args.no_baseline_ok and _no_baseline_yet(args.baseline, current):
        return EXIT_OK, [f"harness: not compared: no baseline yet ({args.baseline} holds no run)"]
    skipped: list[str] = []
    baseline, why = pick_baseline(args.baseline, current.key, before=current.started, exclude=current.path.parent,
                                  skipped=skipped)
    for problem in skipped:
        print(f"harness: skipped {problem}", file=sys.stderr)
    if baseline is None:
        return (EXIT_OK if args.no_baseline_ok else EXIT_USAGE), [f"harness: not compared: {why}"]
    if same_run(baseline, current):
        raise UsageError(f"{args.baseline} and {args.current} are the same run ({current.name}); compare it with "
                         "an earlier run")
    comparison = compare_runs(baseline, current,
                              Thresholds(args.timing_threshold, args.quality_threshold, args.busy_limit),
                              args.ignore_key)
    code = {"regressed": EXIT_REGRESSION, "within": EXIT_OK,
            "inconclusive": EXIT_REGRESSION if args.inconclusive == "fail" else EXIT_OK,
            "not compared": EXIT_OK if args.no_baseline_ok else EXIT_USAGE}[comparison.verdict]
    if args.format == "json":
        return code, [json.dumps(comparison.to_dict(), indent=2)]
    if args.format == "markdown":
        return code, [markdown(comparison, everything=args.all).rstrip("\n")]
    # Single measurements (an input-length check's TTFT) cannot be judged: one line for all of them, not one each.
    single = [d for d in comparison.deltas if d.verdict == "inconclusive" and min(d.rounds) < MIN_ROUNDS]
    shown = [d for d in comparison.deltas if args.all or (d.verdict != "within" and d not in single)]
    lines = [f"harness: {comparison.headline()}", *(f"  BROKEN       {line}" for line in comparison.broken)]
    lines += [f"  {delta.line()}" for delta in sorted(shown, key=lambda d: (VERDICTS.index(d.verdict), d.test,
                                                                             d.metric))]
    if single and not args.all:
        metrics = ", ".join(sorted({d.metric for d in single}))
        lines.append(f"  INCONCLUSIVE {len(single)} single measurements ({metrics}): fewer than {MIN_ROUNDS} rounds "
                     "give no noise estimate; --all lists them")
    within = sum(d.verdict == "within" for d in comparison.deltas) if not args.all else 0
    if within:
        lines.append(f"  ({within} metrics within their limit not listed; --all lists them)")
    lines += [f"  not compared: {reason}" for reason in comparison.uncompared]
    return code, lines


def _no_baseline_yet(path: Path, current: Run) -> bool:
    """No baseline exists yet: the path is missing, or a folder holding no run but the current one (a folder with
    an unreadable run is not that: it is broken)."""
    try:
        if not path.exists():
            return True
        if not path.is_dir() or (path / RESULTS_FILE).exists():
            return False
    except OSError:
        return False  # pick_baseline says why it cannot be read
    own = current.path.resolve()
    return all(found.resolve() == own for found in path.glob(f"*/{RESULTS_FILE}"))


def _history(args: argparse.Namespace) -> Output:
    folder: Path = args.folder
    if not _is_dir(folder):
        raise UsageError(f"{folder} is not a folder; pass the reports folder (one folder per run)")
    if args.plot is not None and not args.no_plot and (problem := _unwritable(args.plot)):
        raise UsageError(f"--plot {args.plot}: {problem}; pass a file in an existing, writable folder, or --no-plot")
    runs, problems = find_runs(folder)
    for problem in problems:
        print(f"harness: skipped {problem}", file=sys.stderr)
    runs = runs[-args.last:] if args.last is not None else runs
    if not runs:
        raise UsageError(f"{folder} holds no run with a results.json; a finished pytest session writes "
                         "one into reports/<run>/")
    table = history(runs, args.metric, args.test)
    lines = [table.text(shutil.get_terminal_size((120, 24)).columns)]
    if not args.no_plot and table.columns:
        plot: Path = args.plot or folder / "history.html"
        page = render_history(runs, table.keys, table.columns, table.values, table.legend, plot.parent)
        try:
            write_text_atomic(plot, page)
        except OSError as exc:
            raise UsageError(f"cannot draw the trends into {plot} ({exc.strerror or exc}); pass --plot FILE in a "
                             "writable folder, or --no-plot") from None
        lines.append(f"harness: trends drawn in {plot}")
    return EXIT_OK, lines


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long, a loop of links
        return False


def _unwritable(file: Path) -> str:
    """Why ``file`` cannot be written, as far as one can tell before writing ("" when it can)."""
    try:
        if file.is_dir():
            return "is a folder; name a file in it"
        folder = file.parent
        if not folder.exists():
            return f"the folder {folder} does not exist"
        if not folder.is_dir():
            return f"{folder} is not a folder"
        if not os.access(folder, os.W_OK):
            return f"the folder {folder} is not writable"
    except OSError as exc:
        return f"cannot be checked ({exc.strerror or exc})"
    return ""


def _gates(args: argparse.Namespace) -> Output:
    from harness.builtins import builtin_gates
    from harness.config.gates import declare, resolve_gates
    from harness.config.settings import read_pyproject_table

    pyproject = args.pyproject or _nearest_pyproject()
    document = {} if pyproject is None else _read_pyproject(pyproject, "--pyproject" if args.pyproject else
                                                             "the nearest pyproject.toml")
    declared = declare([builtin_gates()])
    table = read_pyproject_table(pyproject).get("gates", {})
    ini = _pyproject_ini_gates(document)
    gates = resolve_gates(declared, table={k: v for k, v in table.items() if k in declared},
                          table_origin=f"[tool.harness.gates] in {pyproject}",
                          ini_lines=[line for line in ini if line.partition("=")[0].strip() in declared],
                          ini_origin=f"harness_gates in [tool.pytest.ini_options] of {pyproject}")
    rows = [(name, f"{'<=' if gate.bound == 'max' else '>='} {gates[name]:g}{gate.unit}", f"{gate.default:g}",
             gates.origins[name]) for name, gate in sorted(gates.declared.items())]
    others = sorted({*table, *(line.partition("=")[0].strip() for line in ini)} - set(declared))
    rows += [(name, "set here", "-", "a conftest's gate (pytest_harness_gates): a run knows it") for name in others]
    widths = [max(len(row[i]) for row in [("gate", "limit", "default", "source"), *rows]) for i in range(4)]
    lines = ["  ".join(f"{cell:{w}}" for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [("gate", "limit", "default", "source"), *rows]]
    lines.append("set one with --gate NAME=VALUE (a run) or [tool.harness.gates] (the project); pytest.ini and "
                 "tox.ini harness_gates lines are not read here")
    return EXIT_OK, lines


def _read_pyproject(pyproject: Path, flag: str) -> dict[str, Any]:
    """The pyproject.toml, with the tables the gates are read from checked to be tables (a one-line UsageError)."""
    try:
        if not pyproject.is_file():
            raise UsageError(f"{flag} {pyproject}: no such file; pass the project's pyproject.toml")
        document = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else " ".join(str(exc).split())
        raise UsageError(f"{flag} {pyproject} is not a readable TOML file ({reason}); fix it") from None
    node: Any = document
    for depth, name in enumerate(("tool", "pytest", "ini_options")):
        node = node.get(name, {})
        if not isinstance(node, dict):
            where = ".".join(("tool", "pytest", "ini_options")[:depth + 1])
            raise UsageError(f"{flag} {pyproject}: [{where}] is not a table; fix it")
    if not isinstance(harness := document.get("tool", {}).get("harness", {}), dict) or not isinstance(
            harness.get("gates", {}), dict):
        raise UsageError(f"{flag} {pyproject}: [tool.harness] and [tool.harness.gates] must be tables; fix them")
    return document


def _pyproject_ini_gates(document: dict[str, Any]) -> list[str]:
    """``harness_gates`` lines of pyproject's [tool.pytest.ini_options] (the ini file a run reads there)."""
    options = document.get("tool", {}).get("pytest", {})
    lines = options.get("ini_options", {}).get("harness_gates", [])
    return [str(line) for line in (lines if isinstance(lines, list) else str(lines).splitlines()) if str(line).strip()]


def _nearest_pyproject() -> Path | None:
    return next((folder / "pyproject.toml" for folder in (Path.cwd(), *Path.cwd().parents)
                 if (folder / "pyproject.toml").is_file()), None)


def _build(args: argparse.Namespace) -> Output:
    """The build a run would do, on this machine, checked against the memory plan first."""
    from harness.builtins import make_builder
    from harness.config.settings import resolve
    from harness.fsutil import link_or_copy
    from harness.session import HarnessSession

    if args.out is not None and (problem := _unmakeable(args.out)):
        raise UsageError(f"--out {args.out}: {problem}; pass a folder to create in an existing, writable one")
    pyproject = _nearest_pyproject()
    cli = {name: getattr(args, name) for name in ("model", "base_model", "precision", "builder", "cache_dir",
                                                  "memory")}
    settings = resolve(cli, env=os.environ, pyproject=pyproject,
                       rootdir=pyproject.parent if pyproject else Path.cwd())
    settings = replace(settings, reports_dir=settings.cache_dir / "build-logs")  # the build log and provenance
    session = HarnessSession.open(settings, make_builder(settings))
    if not session.plan.needs_build:
        raise UsageError(f"--model {settings.model} is already a built onnxruntime-genai folder; pass it to pytest")
    refusal = session.plan_memory(None).refusal()
    if refusal is not None:
        raise UsageError(refusal)
    built = session.prepare(lambda message: print(f"harness: {message}", file=sys.stderr, flush=True)).path
    if args.out is not None:
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            for item in built.iterdir():
                if item.is_file() and not item.name.startswith("."):
                    link_or_copy(item, args.out / item.name)
        except OSError as exc:
            raise UsageError(f"--out {args.out}: the files could not be laid out ({exc.strerror or exc}); the build "
                             f"is in {built}") from None
        built = args.out
    return EXIT_OK, [str(built)]


def _unmakeable(folder: Path) -> str:
    """Why ``folder`` cannot be used or created, as far as one can tell before ("" when it can)."""
    try:
        if folder.exists():
            return "" if folder.is_dir() else "is not a folder"
        existing = next(parent for parent in folder.absolute().parents if parent.exists())
        if not existing.is_dir():
            return f"{existing} is not a folder"
        if not os.access(existing, os.W_OK):
            return f"the folder {existing} is not writable"
    except OSError as exc:
        return f"cannot be checked ({exc.strerror or exc})"
    return ""


def _merge(args: argparse.Namespace) -> Output:
    from harness.report.merge import MERGED_FILE, SUMMARY_FILE, merge, summary_markdown, text_lines

    if problem := _unmakeable(args.out):
        raise UsageError(f"--out {args.out}: {problem}; pass a folder to create in an existing, writable one")
    merged = merge(args.runs, args.hosts)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out / MERGED_FILE, json.dumps(merged.to_json(), indent=2, allow_nan=False))
        write_text_atomic(args.out / SUMMARY_FILE, summary_markdown(merged))
    except OSError as exc:
        raise UsageError(f"--out {args.out}: the merged report could not be written ({exc.strerror or exc}); pass "
                         "a writable folder") from None
    lines = [*text_lines(merged), f"harness: merged report {args.out} ({SUMMARY_FILE}, {MERGED_FILE})"]
    return (EXIT_OK if merged.passed else EXIT_REGRESSION), lines


COMMANDS: dict[str, Callable[[argparse.Namespace], Output]] = {"compare": _compare, "history": _history,
                                                               "merge": _merge, "gates": _gates, "build": _build}


def _print(lines: Sequence[str]) -> None:
    """Print, treating a reader that stopped reading (``| head``) as done, not as an error."""
    try:
        sys.stdout.write("".join(f"{line}\n" for line in lines))
        sys.stdout.flush()
    except OSError as error:  # BrokenPipeError; EINVAL on Windows
        if not system.closed_pipe(error):
            raise
        # Python flushes stdout again at exit; point it at devnull so that flush cannot fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        # A model's answer or a run's name may hold what stdout's encoding cannot (cp1252 on Windows when redirected):
        # print it as "?", never fail with UnicodeEncodeError.
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")
    try:
        args = _parser().parse_args(argv)  # exits 2 on bad arguments, 0 after --help / --version
    except SystemExit:
        _print([])  # --help | head: settle stdout here, or Python's final flush reports the closed pipe
        raise
    try:
        code, lines = COMMANDS[args.command](args)
    except HarnessError as exc:
        print(one_line(exc), file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a bug: say so, with the traceback, and a distinct exit code
        print(f"harness: internal error: {type(exc).__name__}: {exc} (please report it with the traceback below)",
              file=sys.stderr)
        traceback.print_exc()
        return EXIT_INTERNAL
    _print(lines)
    return code


if __name__ == "__main__":
    sys.exit(main())
