"""What a reader of a run's reports acts on, read from results.json: the verdict, the failures grouped by
cause, and the findings that must not hide under a pass. ``summary.md`` and ``report.html`` show the same."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.report.compare import broken_check
from harness.text import clip_words, plural

Test = Mapping[str, Any]
BAD_OUTCOMES = ("failed", "error", "xpassed")


@dataclass(frozen=True)
class Verdict:
    """The run's verdict: one word (``passed``, ``findings``, ``failed``, ``regressed``, ``inconclusive``,
    ``unstable``, the CSS class too), its headline in capitals, and the counts behind it. A pass with a reported
    finding (user text that can switch roles, ...) is ``findings``, never shown green."""

    word: str
    headline: str
    counts: str

    @property
    def line(self) -> str:
        return f"{self.headline} ({self.counts})"


def _worst_change(baseline: Mapping[str, Any]) -> str:
    """What regressed, for the banner: the first check that broke, else the largest worsening metric."""
    if baseline.get("broken"):
        others = len(baseline["broken"]) - 1
        check = broken_check(str(baseline["broken"][0]))
        return f"{check} fails now" + (f" (and {others} more)" if others else "")
    worse = [d for d in baseline.get("deltas", []) if d.get("verdict") == "regression"]
    if not worse:
        return ""
    delta = max(worse, key=lambda d: abs(float(d["change"])))
    more = f" (and {len(worse) - 1} more)" if len(worse) > 1 else ""
    return f"{delta['metric']} {float(delta['change']):+.1%} in {delta['test']}{more}"


def verdict_of(results: Mapping[str, Any]) -> Verdict:
    totals, status = results.get("totals", {}), results["run"].get("exit_status", 0)
    baseline = results.get("baseline") or {}
    counts = ", ".join(f"{n} {k}" for k, n in totals.items() if n) or "no checks ran"
    bad = sum(totals.get(outcome, 0) for outcome in BAD_OUTCOMES)
    regressions = int(baseline.get("regressions", 0) or 0)
    inconclusive = baseline.get("verdict") in ("inconclusive", "not compared") or bool(totals.get("inconclusive"))
    against = f" against {baseline.get('baseline')}"
    if status == 5 or not counts_total(totals):
        return Verdict("failed", "NO CHECKS RAN", counts)
    if bad or status not in (0, 1) or (status == 1 and not regressions and not inconclusive):
        word = "failed"
    elif regressions:
        word = "regressed"
    elif inconclusive:
        word = "inconclusive"
    elif totals.get("unstable", 0):
        word = "unstable"
    else:
        word = "passed"
    extra = f"; {regressions} regression(s){against}" if regressions and word != "regressed" else ""
    checks = "FAILED" if status == 1 else "PASSED"  # --inconclusive=fail
    doubt = (f"NOT COMPARED with {baseline.get('baseline')}" if baseline.get("verdict") == "not compared"
             else f"comparison INCONCLUSIVE{against}" if baseline.get("verdict") == "inconclusive"
             else "timing INCONCLUSIVE")
    headline = {"failed": "FAILED", "regressed": f"REGRESSED{against}: {_worst_change(baseline)}",
                "inconclusive": f"{checks}, {doubt}", "unstable": "PASSED with unstable verdicts",
                "passed": "PASSED"}[word]
    reported = reported_findings(results)
    if reported and word in ("passed", "unstable", "inconclusive"):  # a failure's headline says enough
        headline += f"{' and' if ' with ' in headline else ' with'} {plural(reported, 'finding')}"
        word = "findings" if word == "passed" else word
    return Verdict(word, headline, f"{counts}{extra}")


def reported_findings(results: Mapping[str, Any]) -> int:
    """How many findings the checks reported (``harness_finding``), whatever their outcome."""
    return sum(len(test.get("findings", [])) for test in results.get("tests", []))


def counts_total(totals: Mapping[str, int]) -> int:
    return sum(int(n) for n in totals.values())


# -- failures by cause -----------------------------------------------------------------------------
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_NUMBER = re.compile(r"\b\d+(?:\.\d+)?(?:e-?\d+)?\b")


_EXCEPTION_CLASS = re.compile(r"^(?:AssertionError|Failed): ")
TITLE_LENGTH = 200  # characters of a cause's heading, its start and its end where a fix is (its full text follows)
SPECIFIC = 40  # characters a message's pattern needs to name a cause on its own, whichever check says it


def cause_of(test: Test) -> str:
    """What a failure says with its particulars (quoted texts, numbers) taken out: failures that share it share
    a cause, e.g. one wrong PromptTemplate failing template checks per role and edge case. A pattern too short
    to be specific ("assert N == N") is only shared within one check function."""
    first = str(test.get("message") or test["outcome"]).splitlines()[0]
    pattern = _NUMBER.sub("N", _QUOTED.sub("…", first))
    return pattern if len(pattern) >= SPECIFIC else f"{str(test['id']).split('[', 1)[0]}: {pattern}"


@dataclass
class FailureGroup:
    cause: str
    tests: list[Test] = field(default_factory=list)

    @property
    def title(self) -> str:
        """The first instance's message, cut to a heading's length: a real sentence, not the pattern, without the
        exception's class (``AssertionError:``, pytest's ``Failed:``), which says nothing to its reader."""
        first = str(self.tests[0].get("message") or self.tests[0]["outcome"]).splitlines()[0]
        return clip_words(_EXCEPTION_CLASS.sub("", first), TITLE_LENGTH)


def failure_groups(tests: Sequence[Test]) -> list[FailureGroup]:
    """The failed checks (errors and unexpected passes too), grouped by cause, largest group first."""
    groups: dict[str, FailureGroup] = {}
    for test in tests:
        if test["outcome"] in BAD_OUTCOMES:
            groups.setdefault(cause_of(test), FailureGroup(cause_of(test))).tests.append(test)
    return sorted(groups.values(), key=lambda group: -len(group.tests))


def full_text(test: Test) -> str:
    """A check's whole failure text: the prompt, the answer and one line per assertion where it has them."""
    return str(test.get("details") or test.get("message") or "").strip()


def what_it_says(test: Test) -> str:
    """The failure's own words: a traceback's ``E`` lines (without the E) and where it failed, else its full
    text. The traceback's code is for whoever debugs the check, not for the reader of the verdict."""
    text = full_text(test)
    lines = text.splitlines()
    said = [line[1:] for line in lines if line.startswith("E ")]  # indented alike: dedent keeps their alignment
    if not said:
        return text
    said = textwrap.dedent("\n".join(said)).splitlines()
    said[0] = _EXCEPTION_CLASS.sub("", said[0])
    # pytest's own rendering of the comparison (``assert a == b`` and its diff) repeats what a message says
    echo = next((i for i, line in enumerate(said) if i and line.startswith("assert ")), len(said))
    return "\n".join([*said[:echo], f"({lines[-1].strip()})"]).strip()


def under_heading(test: Test, heading: str) -> str:
    """What a failure says, without its first line when the cause's heading above it says that line whole."""
    text = what_it_says(test)
    first, _, rest = text.partition("\n")
    return rest if _EXCEPTION_CLASS.sub("", first.strip()) == heading and rest.strip() else text


# -- findings --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    kind: str  # e.g. special-token-injection, known runtime issue, unstable verdict
    check: str  # the check's id
    outcome: str  # the check's own outcome: a finding shows whatever it is
    text: str


def findings_of(results: Mapping[str, Any]) -> list[Finding]:
    """Reported findings (``harness_finding``: the injection verdict, greedy divergence from the reference, ...),
    known runtime issues (xfails), and unstable and inconclusive verdicts."""
    found: list[Finding] = []
    for test in results["tests"]:
        found += [Finding(f["kind"], test["id"], test["outcome"], f["text"]) for f in test.get("findings", [])]
        if test["outcome"] == "xfailed":
            found.append(Finding("known runtime issue", test["id"], "xfailed", test.get("message") or ""))
        elif test["outcome"] == "unstable":
            weakest = test.get("properties", {}).get("weakest_decisions") or []
            text = str(test.get("message") or "") + (f"\nweakest decisions: {'; '.join(map(str, weakest[:3]))}"
                                                     if weakest else "")
            found.append(Finding("unstable verdict", test["id"], "unstable", text))
        elif test["outcome"] == "inconclusive":
            found.append(Finding("inconclusive timing", test["id"], "inconclusive", str(test.get("message") or "")))
    return found


# -- metrics against their gates -------------------------------------------------------------------
@dataclass(frozen=True)
class GatedMetric:
    gate: str
    check: str
    measured: float
    limit: float
    bound: str
    unit: str
    origin: str

    @property
    def within(self) -> bool:
        return self.measured <= self.limit if self.bound == "max" else self.measured >= self.limit


def gated_metrics(results: Mapping[str, Any]) -> list[GatedMetric]:
    """Each gate whose metric the checks recorded under the gate's name (without _max/_min, or without its family
    prefix too: parity_ppl_ratio_max reads ppl_ratio, quality_token_f1_min reads quality_token_f1), at its worst
    over the checks that recorded it."""
    found = []
    for name, gate in results.get("gates", {}).items():
        stem = re.sub(r"_(max|min)$", "", name)
        candidates = (stem, stem.split("_", 1)[-1])
        measured: list[tuple[float, str]] = []
        for metric in candidates:
            measured = [(float(test["metrics"][metric]), str(test["id"])) for test in results["tests"]
                        if metric in test.get("metrics", {})]
            if measured:
                break
        if measured:
            value, check = max(measured) if gate["bound"] == "max" else min(measured)
            found.append(GatedMetric(name, check, value, float(gate["value"]), gate["bound"], gate.get("unit", ""),
                                     gate["origin"]))
    return found


def precision_table(tests: Sequence[Test]) -> tuple[list[Mapping[str, Any]], str | None]:
    """The precision comparison's rows and recommended precision, when this run compared precisions."""
    rows = next((t["properties"]["precision_table"] for t in tests
                 if isinstance(t.get("properties", {}).get("precision_table"), list)), None)
    recommended = next((t["properties"].get("recommended_precision") for t in tests
                        if "recommended_precision" in t.get("properties", {})), None)
    return [row for row in rows or () if isinstance(row, Mapping)], recommended
