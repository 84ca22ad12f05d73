"""``harness merge``: one verdict for a model from runs on many hosts, and from the shards of one run.

A model should pass on every machine its users have, and hosts disagree on greedy answers (another instruction set
is another int8 kernel) and on speed. Each input run is one host's leg; the shards of one run (``--harness-shard``,
same host kind, same shard count) are joined back into one leg first. Then every check gets one verdict across the
legs, worst first:

- ``failed``: it failed (or errored, or passed where it was expected to fail) on at least one host;
- ``missing``: some host did not run it at all (a leg that ended early, or ran other suites);
- ``unstable``: it passed everywhere, but some host's verdict was unstable or inconclusive;
- ``passed``: it passed on every host that ran it (skipped on some, at most);
- ``skipped``: no host ran it.

The merge fails (exit 1) on any failed or missing check, on a leg that did not finish or regressed against its
baseline, and on a shard that is missing or given twice: nothing is lost silently. Runs of different models or
precisions are not merged (a usage error).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.report import digest
from harness.report.compare import METRICS
from harness.report.runs import RESULTS_FILE, CompareError, Run, is_folder_of_runs, load_run
from harness.text import clip, plural

MERGED_FORMAT = "onnx-slm-harness-merged"
MERGED_VERSION = 1
MERGED_FILE, SUMMARY_FILE = "merged.json", "summary.md"
VERDICTS = ("failed", "missing", "unstable", "passed", "skipped")  # worst first
FAILING = ("failed", "missing")
TIMING_METRICS = tuple(name for name, spec in METRICS.items() if spec.kind == "timing")
SHOWN_CHECKS = 30  # checks listed per section of summary.md (merged.json has them all)
MESSAGE_SHOWN = 160  # characters of a failure's message in summary.md


@dataclass(frozen=True)
class Leg:
    """One host's run, or the shards of one run joined."""

    name: str
    runs: tuple[Run, ...]
    machine: Mapping[str, str]
    accuracy_level: str

    @property
    def shards(self) -> list[str]:
        return [str(run.data["run"].get("shard")) for run in self.runs if run.data["run"].get("shard")]

    def tests(self) -> dict[str, Mapping[str, Any]]:
        return {test_id: test for run in self.runs for test_id, test in run.tests().items()}

    def to_json(self) -> dict[str, Any]:
        totals: Counter[str] = Counter()
        for run in self.runs:
            totals.update({name: int(count) for name, count in run.data.get("totals", {}).items()})
        return {"name": self.name, "machine": dict(self.machine), "accuracy_level": self.accuracy_level,
                "runs": [{"id": run.name, "path": str(run.path), "shard": run.data["run"].get("shard"),
                          "exit_status": run.data["run"].get("exit_status"),
                          "verdict": digest.verdict_of(run.data).word} for run in self.runs],
                "totals": dict(totals),
                "duration_s": round(sum(float(run.data["run"].get("duration_s", 0)) for run in self.runs), 3)}


@dataclass(frozen=True)
class MergedCheck:
    id: str
    verdict: str
    outcomes: dict[str, str | None]  # leg name -> outcome (None: the leg did not run it)
    messages: dict[str, str] = field(default_factory=dict)  # leg name -> why it did not pass
    timings: dict[str, dict[str, float]] = field(default_factory=dict)  # leg name -> timing metric -> value
    findings: dict[str, list[str]] = field(default_factory=dict)  # leg name -> what a passing check found

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "verdict": self.verdict, "outcomes": self.outcomes, "messages": self.messages,
                "timings": self.timings, "findings": self.findings}


@dataclass(frozen=True)
class Merged:
    legs: tuple[Leg, ...]
    checks: tuple[MergedCheck, ...]
    problems: tuple[str, ...]  # legs or shards that keep the merge from passing

    @property
    def counts(self) -> Counter[str]:
        return Counter(check.verdict for check in self.checks)

    @property
    def passed(self) -> bool:
        return not self.problems and not any(self.counts[verdict] for verdict in FAILING) and bool(self.checks)

    @property
    def verdict(self) -> str:
        if not self.passed:
            return "failed"
        return "unstable" if self.counts["unstable"] else "passed"

    def headline(self) -> str:
        hosts = plural(len(self.legs), "host")
        if not self.checks:
            return f"FAILED: no checks ran on the {hosts}"
        failing = sum(self.counts[verdict] for verdict in FAILING)
        if failing:
            return f"FAILED: {failing} of {plural(len(self.checks), 'check')} fail or are missing on some of {hosts}"
        if self.problems:
            return f"FAILED: {plural(len(self.problems), 'problem')} with the runs of {hosts}"
        unstable = f", {self.counts['unstable']} unstable somewhere" if self.counts["unstable"] else ""
        every = hosts if len(self.legs) == 1 else f"all {hosts}"
        findings = sum(1 for check in self.checks if check.findings)
        noted = f" with {plural(findings, 'finding')}" if findings else ""
        return f"PASSED on {every}{noted}: {plural(len(self.checks), 'check')}{unstable}"

    def to_json(self) -> dict[str, Any]:
        first = self.legs[0].runs[0].data
        return {"format": MERGED_FORMAT, "schema_version": MERGED_VERSION, "verdict": self.verdict,
                "headline": self.headline(), "model": {**first.get("key", {}),
                                                       "name": first.get("provenance", {}).get("model_name")},
                "legs": [leg.to_json() for leg in self.legs], "problems": list(self.problems),
                "totals": {verdict: self.counts[verdict] for verdict in VERDICTS},
                "checks": [check.to_json() for check in self.checks]}


# -- reading the runs ------------------------------------------------------------------------------
def collect_runs(paths: Sequence[Path]) -> list[Run]:
    """Every run the paths name: a run folder, its results.json, or a folder holding runs at any depth (as a CI
    job's downloaded artifacts are); an unreadable run is a CompareError, never left out."""
    runs: list[Run] = []
    for path in paths:
        if is_folder_of_runs(path):
            found = sorted(path.rglob(RESULTS_FILE))
            if not found:
                raise CompareError(f"{path} holds no run (no results.json at any depth); pass run folders or the "
                                   "folder the legs' reports were downloaded into")
            runs += [load_run(file) for file in found]
        else:
            runs.append(load_run(path))
    unique = {run.path.resolve(): run for run in runs}
    if len(unique) < 2 and not any(run.data["run"].get("shard") for run in unique.values()):
        raise CompareError("harness merge needs the runs of at least two hosts, or the shards of one run; "
                           f"got {plural(len(unique), 'run')}")
    return list(unique.values())


def _model_of(run: Run) -> tuple[str, str]:
    key = run.data.get("key", {})
    return str(key.get("model_sha256")), str(key.get("precision"))


def _identity(run: Run) -> tuple[str, ...]:
    machine = run.data.get("provenance", {}).get("machine", {})
    key = run.data.get("key", {})
    return (*(str(machine.get(name, "?")) for name in ("system", "cpu", "isa", "cores", "python")),
            str(key.get("accuracy_level", "as built")), str(key.get("ep", "?")))


def _leg_name(identity: tuple[str, ...]) -> str:
    system, cpu, isa, _cores, python, level, ep = identity
    name = f"{system.split(' ')[0]} · {cpu} ({isa}) · Python {'.'.join(python.split('.')[:2])}"
    name += "" if level == "as built" else f" · accuracy_level {level}"
    return name + ("" if ep in ("cpu", "?") else f" · {ep}")


def legs_of(runs: Sequence[Run]) -> tuple[list[Leg], list[str]]:
    """The runs as legs (the shards of one host kind joined), and what is wrong with the shards."""
    models = sorted({_model_of(run) for run in runs})
    if len(models) > 1:
        shown = "; ".join(f"{sha[:12]} at {precision}" for sha, precision in models)
        raise CompareError(f"the runs test different models or precisions ({shown}); merge the runs of one model "
                           "and precision")
    problems: list[str] = []
    groups: dict[tuple[str, ...], list[Run]] = defaultdict(list)
    for run in runs:  # the legs in the order given
        shard = run.data["run"].get("shard")
        groups[(*_identity(run), f"/{shard.split('/')[1]}" if shard else run.name)].append(run)
    legs: list[Leg] = []
    for group_key, members in groups.items():
        identity = group_key[:-1]
        if group_key[-1].startswith("/"):
            problems += _shard_problems(_leg_name(identity), members, int(group_key[-1][1:]))
        name = _leg_name(identity)
        taken = sum(1 for leg in legs if leg.name == name or leg.name.startswith(f"{name} #"))
        machine = members[0].data.get("provenance", {}).get("machine", {})
        legs.append(Leg(name if not taken else f"{name} #{taken + 1}", tuple(members),
                        {k: str(v) for k, v in machine.items()}, identity[5]))
    for leg in legs:
        for run in leg.runs:
            status = run.data["run"].get("exit_status")
            if status not in (0, 1):
                problems.append(f"{leg.name}: run {run.name} did not finish (pytest exit status {status}): rerun it")
            elif digest.verdict_of(run.data).word == "regressed":
                problems.append(f"{leg.name}: run {run.name} regressed against its baseline (see its summary.md)")
    return legs, problems


def _shard_problems(name: str, runs: Sequence[Run], count: int) -> list[str]:
    given = Counter(int(str(run.data["run"]["shard"]).split("/")[0]) for run in runs)
    missing = [str(index) for index in range(1, count + 1) if not given[index]]
    twice = [str(index) for index, times in sorted(given.items()) if times > 1]
    problems = [f"{name}: shard {', '.join(missing)} of {count} is missing: pass every shard's run"] if missing else []
    problems += [f"{name}: shard {', '.join(twice)} of {count} is given twice: pass each shard's run once"] if twice \
        else []
    seen: Counter[str] = Counter(test_id for run in runs for test_id in run.tests())
    if doubled := sorted(test_id for test_id, times in seen.items() if times > 1):
        problems.append(f"{name}: {plural(len(doubled), 'check')} ran in more than one shard (e.g. {doubled[0]}): "
                        "run the shards with the same arguments")
    return problems


# -- the verdicts ----------------------------------------------------------------------------------
def _verdict(outcomes: Sequence[str | None]) -> str:
    ran = [outcome for outcome in outcomes if outcome is not None]
    if any(outcome in digest.BAD_OUTCOMES for outcome in ran):
        return "failed"
    if len(ran) < len(outcomes):
        return "missing"
    if any(outcome in ("unstable", "inconclusive") for outcome in ran):
        return "unstable"
    if all(outcome in ("skipped", "xfailed") for outcome in ran):
        return "skipped"
    return "passed"


def merge_runs(runs: Sequence[Run]) -> Merged:
    legs, problems = legs_of(runs)
    tests = {leg.name: leg.tests() for leg in legs}
    ids = sorted({test_id for leg_tests in tests.values() for test_id in leg_tests})
    checks = []
    for test_id in ids:
        outcomes = {leg: (str(found["outcome"]) if (found := leg_tests.get(test_id)) else None)
                    for leg, leg_tests in tests.items()}
        messages = {leg: clip(" ".join(str(leg_tests[test_id].get("message") or "").split()), 400)
                    for leg, leg_tests in tests.items() if outcomes[leg] not in (None, "passed")}
        timings = {leg: timing for leg, leg_tests in tests.items() if test_id in leg_tests
                   and (timing := {name: float(value) for name, value in leg_tests[test_id].get("metrics", {}).items()
                                   if name in TIMING_METRICS})}
        findings = {leg: texts for leg, leg_tests in tests.items() if test_id in leg_tests
                    and (texts := [str(finding.get("text", "")) for finding in leg_tests[test_id].get("findings", [])])}
        checks.append(MergedCheck(test_id, _verdict(list(outcomes.values())), outcomes, messages, timings, findings))
    checks.sort(key=lambda check: VERDICTS.index(check.verdict))
    return Merged(tuple(legs), tuple(checks), tuple(problems))


def merge(paths: Sequence[Path], hosts: int | None = None) -> Merged:
    """The merged verdict of the runs ``paths`` name; with ``hosts``, fewer legs than that is a problem (a leg whose
    job uploaded nothing must not pass unseen)."""
    merged = merge_runs(collect_runs(paths))
    if hosts is not None and len(merged.legs) < hosts:
        missing = f"{plural(len(merged.legs), 'host')} ran, {hosts} expected (--hosts): a leg uploaded no run"
        return Merged(merged.legs, merged.checks, (*merged.problems, f"{missing}; see its job's log"))
    return merged


# -- summary.md ------------------------------------------------------------------------------------
def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summary_markdown(merged: Merged) -> str:
    """The merged verdict for a CI job summary: the hosts, then the checks that do not pass everywhere, side by side."""
    legs = merged.legs
    header = [f"H{index}" for index in range(1, len(legs) + 1)]
    first = legs[0].runs[0].data
    model = first.get("key", {})
    lines = [f"## Merged verdict: {merged.headline()}", "",
             f"model {first.get('provenance', {}).get('model_name', '?')} (sha256 "
             f"{str(model.get('model_sha256', '?'))[:12]}), {model.get('precision', '?')}, ep {model.get('ep', '?')}",
             "", "| | host | runs | verdict | passed | failed | other | time |", "|---|---|---|---|---|---|---|---|"]
    for short, leg in zip(header, legs, strict=True):
        data = leg.to_json()
        totals: Mapping[str, int] = data["totals"]
        failed = sum(totals.get(outcome, 0) for outcome in digest.BAD_OUTCOMES)
        other = sum(totals.values()) - failed - totals.get("passed", 0)
        verdicts = sorted({run["verdict"] for run in data["runs"]})
        shards = f" (shards {', '.join(leg.shards)})" if leg.shards else ""
        lines.append(f"| {short} | {_cell(leg.name)} | {len(leg.runs)}{shards} | {', '.join(verdicts)} | "
                     f"{totals.get('passed', 0)} | {failed} | {other} | {data['duration_s']:.0f} s |")
    if merged.problems:
        lines += ["", f"### Problems with the runs ({len(merged.problems)})", "",
                  *(f"- {_cell(problem)}" for problem in merged.problems)]
    titles = {"failed": "Fail on some hosts", "missing": "Not run on every host", "unstable": "Unstable somewhere"}
    for verdict, title in titles.items():
        chosen = [check for check in merged.checks if check.verdict == verdict]
        if chosen:
            lines += ["", f"### {title} ({len(chosen)})", "", _outcome_table(chosen, legs, header), ""]
            lines += [f"- `{check.id}` on {short}: {_cell(clip(check.messages[leg.name], MESSAGE_SHOWN))}"
                      for check in chosen[:SHOWN_CHECKS] for short, leg in zip(header, legs, strict=True)
                      if check.messages.get(leg.name)]
    found = [(check, text, [short for short, leg in zip(header, legs, strict=True) if text in
                            check.findings.get(leg.name, [])])
             for check in merged.checks for text in dict.fromkeys(t for ts in check.findings.values() for t in ts)]
    if found:
        lines += ["", f"### Findings ({len(found)})", ""]
        lines += [f"- `{check.id}` on {', '.join(hosts)}: {_cell(clip(text, 400))}" for check, text, hosts in found]
    timed = [check for check in merged.checks if len(check.timings) > 1]
    if timed:
        lines += ["", f"### Timings side by side ({len(timed)} checks)", "",
                  "| check | metric | " + " | ".join(header) + " |", "|---|---|" + "---|" * len(header)]
        for check in timed[:SHOWN_CHECKS]:
            for metric in sorted({name for timing in check.timings.values() for name in timing}):
                cells = [f"{check.timings[leg.name][metric]:.4g}" if metric in check.timings.get(leg.name, {})
                         else "-" for leg in legs]
                lines.append(f"| `{check.id}` | {metric} | " + " | ".join(cells) + " |")
    everywhere = merged.counts["passed"]
    lines += ["", f"{plural(everywhere, 'check')} pass on every host; {merged.counts['skipped']} skipped everywhere "
              f"(each check's outcome per host is in {MERGED_FILE})", ""]
    return "\n".join(lines)


def _outcome_table(checks: Sequence[MergedCheck], legs: Sequence[Leg], header: Sequence[str]) -> str:
    rows = ["| check | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    for check in checks[:SHOWN_CHECKS]:
        cells = [_shown_outcome(check.outcomes[leg.name]) for leg in legs]
        rows.append(f"| `{_cell(check.id)}` | " + " | ".join(cells) + " |")
    if len(checks) > SHOWN_CHECKS:
        rows.append(f"| and {len(checks) - SHOWN_CHECKS} more (in {MERGED_FILE}) |" + " |" * len(header))
    return "\n".join(rows)


def _shown_outcome(outcome: str | None) -> str:
    if outcome is None:
        return "not run"
    return f"**{outcome}**" if outcome in digest.BAD_OUTCOMES else outcome


def text_lines(merged: Merged) -> list[str]:
    """What ``harness merge`` prints: the headline, each failing check per host, the problems."""
    lines = [f"harness: {merged.headline()}"]
    lines += [f"harness:   host {index}: {leg.name} ({plural(len(leg.runs), 'run')})"
              for index, leg in enumerate(merged.legs, start=1)]
    lines += [f"harness:   PROBLEM {problem}" for problem in merged.problems]
    for check in merged.checks:
        if check.verdict not in (*FAILING, "unstable"):
            break
        where = ", ".join(f"{outcome or 'not run'} on host {index}" for index, outcome
                          in enumerate(check.outcomes.values(), start=1) if outcome != "passed")
        lines.append(f"harness:   {check.verdict.upper():8} {check.id}: {where}")
    return lines
