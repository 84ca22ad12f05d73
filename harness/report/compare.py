"""Compare two runs' token and quality metrics, only when they measured the same thing the same way.

A run is a ``results.json`` (``harness.report.runs`` reads it, ``harness.report.results`` writes it). Two runs are
compared only when their key properties match (model hash, precision, accuracy level, execution provider, machine);
otherwise the comparison says which differ and compares nothing. A check that passed in the baseline and fails now
is a regression.

Token metrics (TTFT, TPOT, tokens/s, latency) are noisy: each benchmark records its per-round values, and the
95% bootstrap interval of the relative difference of the medians decides between three outcomes. *Regression*:
the whole interval is worse than the threshold. *Within*: none of it is. *Inconclusive*: it straddles the
threshold, or the rounds are too few, or the machine was not equally busy; it is never a pass in disguise
(``--inconclusive=fail`` fails the run on it). Quality scores (perplexity ratio, KL divergence, top-1 agreement,
case score) repeat exactly with greedy decoding, so they are compared with the threshold alone.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from harness.checks import yardstick
from harness.checks.bench import ROUNDS_SUFFIX, percentile
from harness.checks.timing import HIGHER_IS_BETTER, VERDICTS, Change, timing_verdict, worsening_interval
from harness.config.gates import Gate, Gates
from harness.report.runs import RESULTS_FILE, CompareError, Run, find_runs, is_folder_of_runs, load_run

MIN_ROUNDS = 3  # fewer rounds give no usable noise estimate
RESAMPLES = 2000
CONFIDENCE = 0.95

KEY_LABELS = {"model_sha256": "model hash", "precision": "precision", "accuracy_level": "accuracy level",
              "ep": "execution provider", "machine": "machine"}

GATES = (
    Gate("regression_timing_max", 0.10, "max", "",
         "largest worsening of a token metric (TTFT, TPOT, prefill/decode tokens/s, latency) between a "
         "baseline and this run, as a fraction of the baseline's median; a larger worsening is a "
         "regression only when the 95% bootstrap interval of the difference also excludes no change. "
         "Measured on the default model (int4, cpu, smoke: 5 rounds, 64 output tokens), 2 cores shared with "
         "3 other workers, three tries of `pytest -s tests/e2e/test_benchmarks.py -k compare`: two unchanged "
         "runs differed by -1.1%, -4.2%, -3.4% in decode tokens/s; a 20% slow-down (0.25 x TPOT of delay per "
         "token) measured -21.3%, -24.4%, -24.1%; 10% lies between (re-measure on a quiet machine)", "(0, inf)"),
    Gate("regression_quality_max", 0.02, "max", "",
         "largest worsening of a quality score (ppl_ratio, kl_mean, top1_agreement, case_score) between "
         "a baseline and this run, as a fraction of the baseline; greedy decoding makes these repeat "
         "exactly for one model, precision and machine, so 2% only absorbs rounding in the reports"),
    Gate("compare_other_cpu_diff_max", 15.0, "max", " points",
         "largest difference, between the two runs, in the CPU other processes used while a benchmark ran "
         "(other_cpu_percent: their CPU time in percent of all cores) for its timings to be compared; above "
         "it the comparison says the machine was not equally busy instead of giving a verdict. Measured on "
         "2 cores shared with 3 other workers (fp32 build of the default model, repeated `pytest "
         "suites/test_benchmarks.py -k 'test_generation_latency and 32'`): runs 11 points apart agreed within "
         "4% in decode tokens/s, runs 38 points apart (69% and 31%) differed by 45%", "[0, 100]"),
)
TIMING_GATE, QUALITY_GATE, BUSY_GATE = GATES
BUSY_METRIC = "other_cpu_percent"
YARDSTICK = yardstick.METRIC  # each benchmark round's machine-yardstick time

Kind = Literal["timing", "quality"]
BAD_OUTCOMES = ("failed", "error")
BROKEN_MARK = " passed in the baseline"  # what a line of Comparison.broken says after the check's id


@dataclass(frozen=True)
class MetricSpec:
    higher_is_better: bool
    kind: Kind


KINDS: dict[str, Kind] = {"ttft_s": "timing", "tpot_s": "timing", "latency_s": "timing",
                          "prefill_tokens_per_s": "timing", "decode_tokens_per_s": "timing", "ppl_ratio": "quality",
                          "kl_mean": "quality", "top1_agreement": "quality", "case_score": "quality"}
METRICS = {name: MetricSpec(name in HIGHER_IS_BETTER, kind) for name, kind in KINDS.items()}



@dataclass(frozen=True)
class Thresholds:
    timing: float = TIMING_GATE.default
    quality: float = QUALITY_GATE.default
    busy: float = BUSY_GATE.default  # points by which other processes' CPU use may differ between the runs

    @classmethod
    def from_gates(cls, gates: Gates) -> Thresholds:
        """The run's resolved values of this module's gates."""
        return cls(*(gates[gate.name] for gate in GATES))

    def of(self, kind: Kind) -> float:
        return self.timing if kind == "timing" else self.quality


def key_of(provenance: Mapping[str, Any], precision: str) -> dict[str, str]:
    """The properties two runs must share for their timings to compare."""
    machine = provenance.get("machine", {})
    level = provenance.get("accuracy_level_setting")
    model = str(provenance.get("source_sha256"))
    if provenance.get("merge_key"):  # an adapter: the same one merged into another base is another model
        model += f"+{provenance.get('base_sha256')}"
    return {
        "model_sha256": model,
        "precision": precision,
        "accuracy_level": "as built" if level is None else str(level),  # level 1 decodes at about 0.6 x
        "ep": str(provenance.get("ep")),
        # The instruction-set class picks the int8 kernels: another class is another machine.
        "machine": f"{machine.get('cpu', '?')}, {machine.get('isa', '?')}, {machine.get('cores', '?')} cores",
    }


def key_mismatches(baseline: Mapping[str, str], current: Mapping[str, str], ignore: Collection[str] = ()) -> list[str]:
    return [f"{KEY_LABELS.get(name, name)} differs (baseline {baseline.get(name)!r}, this run {current.get(name)!r})"
            for name in KEY_LABELS if name not in ignore and baseline.get(name) != current.get(name)]


def same_run(a: Run, b: Run) -> bool:
    return a.path.resolve() == b.path.resolve() or (a.name, a.started) == (b.name, b.started)


# pytest's exit codes of a run that did not run its checks to the end: never a baseline in a folder of runs
ENDED_EARLY = {2: "interrupted", 3: "internal error", 4: "usage error"}


def pick_baseline(path: Path, key: Mapping[str, str], before: str | None = None,
                  exclude: Path | None = None, skipped: list[str] | None = None) -> tuple[Run | None, str]:
    """The run at ``path``, or, for a folder of runs, the newest one that started before ``before`` (the current
    run's start) and has the key ``key``. Returns (run, why none was picked).

    A baseline that cannot be read is a CompareError, never a silent "not compared": a mistyped path, an empty
    folder, or a corrupt results.json would otherwise open the gate it was meant to close. In a folder of runs, a run
    that cannot be read (a results.json left empty by a full disk) is skipped, one line each in ``skipped``, and
    the newest readable run is the baseline; a folder with no readable run is the CompareError."""
    if not is_folder_of_runs(path):
        return load_run(path), ""
    runs, problems = find_runs(path)
    runs = [run for run in runs if exclude is None or run.path.parent.resolve() != exclude.resolve()]
    if not runs and problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CompareError(f"the baseline folder {path} holds no readable run; it holds a run that cannot be read: "
                           f"{problems[0]}{more}")
    ended_early = [run for run in runs if run.data["run"].get("exit_status") in ENDED_EARLY]
    problems += [f"{run.name} ended early (exit {run.data['run']['exit_status']}: "
                 f"{ENDED_EARLY[run.data['run']['exit_status']]}): not a baseline" for run in ended_early]
    runs = [run for run in runs if run not in ended_early]
    if skipped is not None:
        skipped.extend(problems)
    if not runs:
        raise CompareError(f"the baseline folder {path} holds no run (no <run>/{RESULTS_FILE} in it); check the "
                           "path, or leave the baseline out where none exists yet (a first CI run)")
    # Starts are in whole seconds: a run of this one's second counts as earlier (this run itself is excluded).
    earlier = [run for run in runs if before is None or run.started <= before]
    if not earlier:
        raise CompareError(f"every run in the baseline folder {path} started after this one; the baseline must be "
                           "an earlier run (is the order of the arguments swapped?)")
    matching = [run for run in earlier if not key_mismatches(run.key, key)]
    if matching:
        return matching[-1], ""
    return None, (f"none of the {len(earlier)} earlier runs in {path} has this run's key properties "
                  f"({'; '.join(f'{KEY_LABELS[k]} {v}' for k, v in key.items())})")


@dataclass(frozen=True)
class Delta:
    test: str
    metric: str
    kind: Kind
    baseline: float  # median of the rounds, or the score
    current: float
    change: float  # (current - baseline) / baseline
    change_ci: tuple[float, float] | None  # 95% bootstrap interval of ``change`` (timing metrics)
    threshold: float
    verdict: Change
    note: str
    rounds: tuple[int, int] = (1, 1)

    def line(self) -> str:
        ci = f", 95% CI {percent_interval(self.change_ci)}" if self.change_ci else ""
        return (f"{self.verdict.upper():12} {self.test} {self.metric}: {_number(self.baseline)} -> "
                f"{_number(self.current)} ({percent_change(self.change)}{ci}; limit {self.threshold:.0%} worse): "
                f"{self.note}")


@dataclass
class Comparison:
    baseline: str
    current: str
    reasons: list[str] = field(default_factory=list)  # why nothing was compared (empty: compared)
    deltas: list[Delta] = field(default_factory=list)
    uncompared: list[str] = field(default_factory=list)  # metrics left out, with why
    broken: list[str] = field(default_factory=list)  # checks that passed in the baseline and fail now, with why

    @property
    def compared(self) -> bool:
        """Whether anything was compared: the key properties match and at least one metric was."""
        return not self.reasons and bool(self.deltas or self.broken)

    @property
    def regressions(self) -> list[Delta]:
        return [d for d in self.deltas if d.verdict == "regression"]

    @property
    def inconclusive(self) -> list[Delta]:
        return [d for d in self.deltas if d.verdict == "inconclusive"]

    @property
    def verdict(self) -> str:
        """``regressed``, ``inconclusive``, ``within``, or ``not compared``."""
        if self.regressions or self.broken:
            return "regressed"
        if not self.compared:
            return "not compared"
        return "inconclusive" if self.inconclusive else "within"

    def why_not_compared(self) -> str:
        return "; ".join(self.reasons) or (f"no metric of {self.current} has a counterpart in {self.baseline} "
                                           "(do the two runs hold the same benchmark or quality checks?)")

    def headline(self) -> str:
        if self.verdict == "not compared":
            return f"not compared with {self.baseline}: {self.why_not_compared()}"
        counts = {v: sum(d.verdict == v for d in self.deltas) for v in VERDICTS}
        word = {"regressed": "REGRESSION", "inconclusive": "INCONCLUSIVE", "within": "no regression"}[self.verdict]
        broken = f", {len(self.broken)} check(s) that passed there fail now" if self.broken else ""
        left_out = f", {len(self.uncompared)} not compared" if self.uncompared else ""
        return (f"{word}: {self.current} against {self.baseline}: {len(self.deltas)} metrics compared, "
                f"{counts['regression']} worse, {counts['inconclusive']} inconclusive, {counts['improvement']} "
                f"better, {counts['within']} within their limit{broken}{left_out}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Comparison:
        """The inverse of ``to_dict`` (from a results.json's ``baseline``); a results file written before the
        inconclusive outcome existed says ``unchanged`` for ``within``."""
        deltas = [Delta(**{**d, "verdict": "within" if d["verdict"] == "unchanged" else d["verdict"],
                           "change_ci": tuple(d["change_ci"]) if d.get("change_ci") else None,
                           "rounds": tuple(d["rounds"])}) for d in data.get("deltas", [])]
        return cls(str(data.get("baseline")), str(data.get("current")), list(data.get("reasons", [])), deltas,
                   list(data.get("uncompared", [])), list(data.get("broken", [])))

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "current": self.current,
            "verdict": self.verdict,
            "compared": self.compared,
            "reasons": [self.why_not_compared()] if self.verdict == "not compared" else [],
            "regressions": len(self.regressions) + len(self.broken),
            "inconclusive": len(self.inconclusive),
            "broken": list(self.broken),
            "deltas": [asdict(d) for d in self.deltas],
            "uncompared": list(self.uncompared),
        }


def _number(value: float) -> str:
    return f"{value:.4g}"


def percent_change(change: float) -> str:
    """A signed relative change; no change reads 0% (not +0.0% or -0.0%)."""
    return "0%" if round(change, 3) == 0 else f"{change:+.1%}"


def percent_interval(interval: Sequence[float]) -> str:
    return f"{percent_change(interval[0])} .. {percent_change(interval[1])}"


def _worsening(baseline: float, current: float, higher_is_better: bool) -> float:
    change = (current - baseline) / baseline
    return -change if higher_is_better else change


def bootstrap_interval(baseline: Sequence[float], current: Sequence[float], resamples: int = RESAMPLES,
                       confidence: float = CONFIDENCE, seed: int = 0,
                       scales: tuple[Sequence[float], Sequence[float]] | None = None) -> tuple[float, float]:
    """Percentile interval of (median(current) - median(baseline)) / median(baseline), resampling the
    rounds of each run independently; seeded, so one pair of runs always gives one answer. With ``scales`` (each
    run's yardstick rounds), each median is first divided by its run's median yardstick time, those rounds
    resampled too, so that the yardstick's own spread widens the interval."""
    rng = random.Random(seed)

    def median_of(values: Sequence[float], scale: Sequence[float] | None) -> float:
        value = statistics.median(rng.choices(values, k=len(values)))
        return value / statistics.median(rng.choices(scale, k=len(scale))) if scale else value

    base_scale, cur_scale = scales or (None, None)
    changes = sorted(median_of(current, cur_scale) / median_of(baseline, base_scale) - 1 for _ in range(resamples))
    tail = (1 - confidence) / 2
    return percentile(changes, tail), percentile(changes, 1 - tail)


def compare_metric(test: str, metric: str, baseline: Sequence[float], current: Sequence[float],
                   thresholds: Thresholds, scales: tuple[Sequence[float], Sequence[float]] | None = None) -> Delta:
    """One metric's verdict; a timing's ``scales`` (each run's yardstick rounds, see ``bootstrap_interval``) make
    its change and interval the normalized ones, while the medians stay the measured ones."""
    spec = METRICS[metric]
    threshold = thresholds.of(spec.kind)
    base, cur = statistics.median(baseline), statistics.median(current)
    change = (cur - base) / base
    if scales is not None:
        change = (cur / base) / (statistics.median(scales[1]) / statistics.median(scales[0])) - 1
    worse = _worsening(base, cur, spec.higher_is_better)
    interval: tuple[float, float] | None = None
    verdict: Change
    if spec.kind == "timing":
        interval = bootstrap_interval(baseline, current, scales=scales)
        verdict, note = timing_verdict(worsening_interval(interval, metric), threshold)
    elif worse > threshold:
        verdict, note = "regression", f"{worse:.1%} worse"
    elif -worse > threshold:
        verdict, note = "improvement", f"{-worse:.1%} better"
    else:
        verdict = "within"
        note = ("identical" if round(worse, 3) == 0 else
                f"{abs(worse):.1%} {'worse' if worse > 0 else 'better'}, within the {threshold:.0%} limit")
    return Delta(test, metric, spec.kind, base, cur, change, interval, threshold, verdict, note,
                 (len(baseline), len(current)))


def _yardsticks(baseline: Mapping[str, Any], current: Mapping[str, Any], base_rounds: int,
                cur_rounds: int) -> tuple[list[float], list[float]] | None:
    """Both runs' machine-yardstick timings, one per round (None unless both runs have them, round for round)."""
    base, cur = _samples(baseline, YARDSTICK), _samples(current, YARDSTICK)
    if base is None or cur is None or (len(base), len(cur)) != (base_rounds, cur_rounds) or min(base + cur) <= 0:
        return None
    return base, cur


def compare_normalized(test: str, metric: str, baseline: Sequence[float], current: Sequence[float],
                       yardsticks: tuple[Sequence[float], Sequence[float]], thresholds: Thresholds) -> Delta:
    """A timing compared in the machine yardstick's units: each run's median over its median yardstick time (a
    rate times it), so that the machine's speed changing between the runs cancels out, with the yardstick rounds'
    spread in the interval. The medians shown stay the measured ones; the change and its interval are the
    normalized ones."""
    higher = METRICS[metric].higher_is_better
    base_y, cur_y = yardsticks
    # a rate times the yardstick's time is a time divided by it, inverted: resample the inverse for rates
    scales = ([1 / y for y in base_y], [1 / y for y in cur_y]) if higher else (base_y, cur_y)
    delta = compare_metric(test, metric, baseline, current, thresholds, scales)
    machine = statistics.median(cur_y) / statistics.median(base_y) - 1
    return replace(delta, note=f"{delta.note} (normalized: the machine yardstick's time "
                               f"{percent_change(machine)} in this run)")


def inconclusive_metric(test: str, metric: str, baseline: Sequence[float], current: Sequence[float],
                        thresholds: Thresholds, why: str) -> Delta:
    """A timing metric whose rounds cannot decide: too few of them, or a machine not equally busy."""
    base, cur = statistics.median(baseline), statistics.median(current)
    return Delta(test, metric, "timing", base, cur, (cur - base) / base, None, thresholds.timing, "inconclusive",
                 why, (len(baseline), len(current)))


def _samples(test: Mapping[str, Any], metric: str) -> list[float] | None:
    rounds = test.get("series", {}).get(metric + ROUNDS_SUFFIX)
    if rounds:
        return [float(v) for v in rounds]
    value = test.get("metrics", {}).get(metric)
    return None if value is None else [float(value)]


def _busy(baseline: Mapping[str, Any], current: Mapping[str, Any], limit: float) -> str:
    """Why a check's timings differ because of other processes rather than the model ("" if they do not)."""
    base = float(baseline.get("metrics", {}).get(BUSY_METRIC, 0.0))
    cur = float(current.get("metrics", {}).get(BUSY_METRIC, 0.0))
    if abs(cur - base) <= limit:
        return ""
    return (f"the machine was not equally busy: other processes used {base:.0f}% of its CPU during the baseline and "
            f"{cur:.0f}% during this run (more than {limit:g} points apart)")


def _broken(test_id: str, baseline: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """Why a check that passed in the baseline fails now ("" if it does not)."""
    if baseline.get("outcome") != "passed" or current.get("outcome") not in BAD_OUTCOMES:
        return ""
    message = str(current.get("message") or "").strip().splitlines()
    return f"{test_id}{BROKEN_MARK}, {current['outcome']} now" + (f": {message[0][:200]}" if message else "")


def broken_check(line: str) -> str:
    """The check id a line of ``Comparison.broken`` names."""
    return line.split(BROKEN_MARK, 1)[0]


def compare_runs(baseline: Run, current: Run, thresholds: Thresholds = Thresholds(),
                 ignore_keys: Collection[str] = ()) -> Comparison:
    comparison = Comparison(baseline.name, current.name)
    comparison.reasons = key_mismatches(baseline.key, current.key, ignore_keys)
    if comparison.reasons:
        return comparison
    base_tests, cur_tests = baseline.tests(), current.tests()
    for test_id in sorted(base_tests.keys() & cur_tests.keys()):
        if broken := _broken(test_id, base_tests[test_id], cur_tests[test_id]):
            comparison.broken.append(broken)
        busy = _busy(base_tests[test_id], cur_tests[test_id], thresholds.busy)
        for metric, spec in METRICS.items():
            base, cur = _samples(base_tests[test_id], metric), _samples(cur_tests[test_id], metric)
            if base is None or cur is None:
                continue
            if statistics.median(base) == 0:
                comparison.uncompared.append(f"{test_id} {metric}: the baseline is 0, no relative change")
            elif spec.kind == "timing" and min(base) <= 0:  # a resampled median could be 0: no relative change
                comparison.uncompared.append(f"{test_id} {metric}: a baseline round is {_number(min(base))}, not a "
                                             "time or rate one can compare with")
            elif spec.kind == "timing" and busy:
                comparison.deltas.append(inconclusive_metric(test_id, metric, base, cur, thresholds, busy))
            elif spec.kind == "timing" and min(len(base), len(cur)) < MIN_ROUNDS:
                comparison.deltas.append(inconclusive_metric(
                    test_id, metric, base, cur, thresholds,
                    f"{min(len(base), len(cur))} round(s): at least {MIN_ROUNDS} give a noise estimate"))
            elif spec.kind == "timing" and (yards := _yardsticks(base_tests[test_id], cur_tests[test_id],
                                                                 len(base), len(cur))):
                comparison.deltas.append(compare_normalized(test_id, metric, base, cur, yards, thresholds))
            else:
                comparison.deltas.append(compare_metric(test_id, metric, base, cur, thresholds))
    for test_id in sorted(base_tests.keys() - cur_tests.keys()):
        if any(_samples(base_tests[test_id], m) for m in METRICS):
            comparison.uncompared.append(f"{test_id}: not in this run")
    return comparison


def markdown(comparison: Comparison, everything: bool = False) -> str:
    """The comparison as a markdown section (for summary.md and PR comments): the checks that broke and the
    metrics not within their limit, worst first so that they never scroll off; ``everything`` adds the rest."""
    lines = [f"### Compared with `{comparison.baseline}`", "", comparison.headline(), ""]
    if comparison.broken:
        lines += [f"Checks that passed in the baseline and fail now ({len(comparison.broken)}):", "",
                  *(f"- {line}" for line in comparison.broken), ""]
    shown = [d for d in comparison.deltas if everything or d.verdict != "within"]
    if shown:
        lines += ["| verdict | check | metric | baseline → this run | change (95% CI) | why |",
                  "|---|---|---|---|---|---|"]
        for d in sorted(shown, key=lambda d: (VERDICTS.index(d.verdict), d.test, d.metric)):
            ci = f" ({percent_interval(d.change_ci)})" if d.change_ci else ""
            verdict = f"**{d.verdict}**" if d.verdict in ("regression", "inconclusive") else d.verdict
            lines.append(f"| {verdict} | `{d.test}` | {d.metric} | {_number(d.baseline)} → {_number(d.current)} | "
                         f"{percent_change(d.change)}{ci} | {d.note} |")
    if len(shown) < len(comparison.deltas):
        lines += ["", f"{len(comparison.deltas) - len(shown)} metrics within their limit (`harness compare --all` "
                  "lists them)."]
    if comparison.uncompared:
        items = "\n".join(f"- {reason}" for reason in comparison.uncompared)
        lines += ["", f"<details><summary>Not compared: {len(comparison.uncompared)} metric(s)</summary>", "",
                  items, "", "</details>"]
    return "\n".join(lines) + "\n"
