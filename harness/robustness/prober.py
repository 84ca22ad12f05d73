"""Runs robustness requests in the model worker and judges each outcome against its case's expectation;
after every request a known-good prompt must still get the run's first answer (else the bad input
corrupted the model's state). The catalogue and what counts as correct: ``harness.robustness.catalog``."""

from __future__ import annotations

import json
import shlex
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.checks.output_format import token_problems
from harness.config.gates import Gates
from harness.errors import HarnessError
from harness.robustness.catalog import (
    EXPECTED,
    KNOWN_GOOD,
    KNOWN_ISSUES,
    Expect,
    KnownIssue,
    ProbeCase,
    Request,
    Status,
    describe,
    max_new_tokens,
)
from harness.runtime.genai import read_model_info
from harness.runtime.protocol import ModelInfo
from harness.text import shorten
from harness.worker.client import Answer, Outcome, WorkerClient, WorkerInfo
from harness.worker.protocol import KINDS

if TYPE_CHECKING:
    from harness.capacity.plan import MemoryPlan
    from harness.config.profiles import Profile


# -- judging -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProbeVerdict:
    """The judgement of one probe's outcome: ok, a known runtime issue, or a failure."""

    status: Status
    line: str  # one readable line
    known_issue: str | None = None


def answer_problems(answer: Answer, eos_ids: Sequence[int], limit: int, must_reach: str | None = None) -> list[str]:
    """What is wrong with the form of an answer (empty list: nothing): its tokens (``token_problems``), and
    whether the prompt reached the model whole."""
    problems = token_problems(answer.token_ids, answer.stop_reason, eos_ids, limit)
    if must_reach is not None and must_reach not in answer.prompt_text:
        problems.append(f"the prompt was cut short: {must_reach!r} never reached the model, which read "
                        f"{shorten(answer.prompt_text, 120)}")
    return problems


def problem(expect: Expect, outcome: Outcome, request: Mapping[str, Any], info: WorkerInfo,
            errors: Sequence[str] = ("HarnessError",), must_reach: str | None = None) -> str | None:
    """Why ``outcome`` is not correct for ``expect`` (None: it is)."""
    if outcome.kind == "crashed":
        return f"crashed the model worker ({outcome.message})"
    if outcome.kind == "hung":
        return f"hung: {outcome.message}"
    if outcome.kind == "rejected":
        reason = outcome.reason
        if "WorkerError" in outcome.classes:
            return f"the worker could not run the request ({reason})"
        if expect == "answer":
            return f"rejected ({reason})"
        if not set(errors) & set(outcome.classes):
            return f"rejected with {reason}, not a {' or '.join(errors)}"
        return None
    assert outcome.answer is not None
    if expect == "reject":
        answer = outcome.answer
        return f"answered ({len(answer.token_ids)} tokens: {shorten(answer.text, 80)}) instead of refusing"
    problems = answer_problems(outcome.answer, info.model.eos_token_ids, max_new_tokens(request), must_reach)
    return "; ".join(problems) if problems else None


def judge(expect: Expect, outcome: Outcome, request: Mapping[str, Any], info: WorkerInfo,
          errors: Sequence[str] = ("HarnessError",), must_reach: str | None = None,
          known: Iterable[KnownIssue] = ()) -> ProbeVerdict:
    wrong = problem(expect, outcome, request, info, errors, must_reach)
    if wrong is None:
        return ProbeVerdict("ok", f"{outcome.kind}, as expected ({EXPECTED[expect]})")
    issue = next((issue for issue in known if issue.seen(request, outcome, info)), None)
    if issue is not None:
        return ProbeVerdict("known", f"known issue {issue.id}: {wrong}. {issue.note}", issue.id)
    wanted = EXPECTED[expect] + (f" ({' or '.join(errors)})" if expect != "answer" and errors != ("HarnessError",)
                                 else "")
    return ProbeVerdict("fail", f"{wrong}; expected {wanted}")


@dataclass(frozen=True)
class Probe:
    """One request, its outcome, the verdict, and whether the model still answers the known-good prompt."""

    request: Request
    outcome: Outcome
    verdict: ProbeVerdict
    recovery: str | None = None  # what went wrong with the known-good prompt afterwards (None: nothing)

    def report(self) -> str:
        """A verdict line, then the data: the input, the outcome, the worker's stderr for a crash or a hang."""
        lines = [self.verdict.line, f"request: {describe(self.request)}", f"outcome: {self.outcome.summary()} "
                 f"after {self.outcome.seconds:.2f} s"]
        if self.outcome.stderr.strip():
            lines += ["worker stderr (end):", *self.outcome.stderr.rstrip().splitlines()[-25:]]
        return "\n".join(lines)

    def properties(self) -> dict[str, object]:
        """Metrics for the run report (record_property)."""
        return {"robustness_outcome": self.outcome.kind, "robustness_outcome_detail": self.outcome.summary(),
                "robustness_request_s": round(self.outcome.seconds, 4), "robustness_verdict": self.verdict.status,
                "robustness_known_issue": self.verdict.known_issue, "robustness_recovered": self.recovery is None}


# -- the prober ----------------------------------------------------------------------------------------
@dataclass
class Prober:
    """Sends requests to the model worker with the gated time limit, and checks recovery after each."""

    client: WorkerClient
    gates: Gates
    model: ModelInfo
    baseline: Answer | None = None
    tally: Counter[str] = field(default_factory=Counter)
    runtime: str | None = None  # the worker's runtime factory (None: onnxruntime-genai's)

    @classmethod
    def open(cls, model_path: Path, ep: str, gates: Gates, runtime: str | None = None) -> Prober:
        info = read_model_info(model_path)
        prober = cls(WorkerClient.for_model(model_path, ep, runtime), gates, info, runtime=runtime)
        try:
            prober.start()
        except BaseException:
            prober.close()
            raise
        return prober

    @property
    def info(self) -> WorkerInfo:
        if self.client.info is None:
            raise HarnessError("the model worker has not started")
        return self.client.info

    @property
    def has_raw_path(self) -> bool:
        """Whether the worker's runtime can take settings unchecked (``RawRuntime``)."""
        return self.client.info is None or self.client.info.raw

    def start(self) -> None:
        """Start the worker and take the known-good answer every later one must match."""
        self.client.start()
        outcome = self.client.request(KNOWN_GOOD, self.timeout_for(KNOWN_GOOD))
        if outcome.answer is None:
            raise HarnessError(f"the model does not answer the known-good prompt {describe(KNOWN_GOOD)}: "
                               f"{outcome.summary()}")
        self.baseline = outcome.answer

    def timeout_for(self, request: Mapping[str, Any], expect: Expect = "answer") -> float:
        """The base limit, plus the per-token allowance for the most tokens the prompt can have when the model may
        answer it: a prompt that must be refused is refused from its token count, before any prefill, so a
        runtime that prefills it instead hangs within the base limit, whatever the context."""
        spec, context = request.get("prompt", {}), self.model.context_length
        if expect == "reject":
            tokens = 0
        elif "fill" in spec:
            tokens = spec.get("tokens", context + int(spec.get("context_offset", 0)))
        elif "past_context" in spec:
            tokens = context
        else:
            tokens = len(json.dumps(spec, ensure_ascii=False).encode("utf-8", "surrogatepass")) + 64
        return self.gates["robustness_timeout_s"] + self.gates["robustness_timeout_ms_per_token"] * min(
            int(tokens), context) / 1000

    def recovery_problem(self) -> str | None:
        """None if the known-good prompt still gets the run's first answer; else what it got (and restart)."""
        outcome = self.client.request(KNOWN_GOOD, self.timeout_for(KNOWN_GOOD))
        assert self.baseline is not None
        if outcome.answer is not None and outcome.answer.token_ids == self.baseline.token_ids:
            return None
        self.client.stop()  # a fresh worker for the next request: the damage is this request's alone
        self.tally["recovery_failed"] += 1
        return (f"state corrupted: afterwards the known-good prompt got {outcome.summary()} instead of "
                f"{shorten(self.baseline.text, 80)} (tokens {list(self.baseline.token_ids)})")

    def check(self, request: Request, expect: Expect, errors: Sequence[str] = ("HarnessError",),
              must_reach: str | None = None, known: Iterable[KnownIssue] = ()) -> Probe:
        outcome = self.client.request(request, self.timeout_for(request, expect))
        verdict = judge(expect, outcome, request, self.info, errors, must_reach, known)
        self.tally[outcome.kind] += 1
        self.tally[f"verdict_{verdict.status}"] += 1
        if verdict.known_issue:
            self.tally[f"known_issue_{verdict.known_issue}"] += 1
        if verdict.status == "fail" or not outcome.reached_runtime:  # nothing reached the model: no state to check
            return Probe(request, outcome, verdict)
        recovery = self.recovery_problem()
        if recovery is not None:
            verdict = ProbeVerdict("fail", f"{recovery}; the input itself: {verdict.line}")
        return Probe(request, outcome, verdict, recovery)

    def skip_reason(self, case: ProbeCase, profile: Profile, memory: MemoryPlan | None, suite: str) -> str | None:
        """Why ``case`` is not run here (None: it is): a context-length prompt beyond the profile's longest or beyond
        what the memory plan lets ``suite`` prefill, or raw settings the plugged-in runtime cannot take."""
        longest, context = profile.max_prompt_tokens, self.model.context_length
        if case.context_prefill and longest is not None and longest < context - 1:
            return (f"needs a prompt of {context - 1} tokens; the {profile.name} profile "
                    f"stops at {longest} (the full profile runs it)")
        too_big = memory.prompt_skip_reason(suite, context - 1) if case.context_prefill and memory else None
        if too_big is not None:
            return too_big
        if "raw" in case.resolve(self.model) and not self.has_raw_path:
            return ("the plugged-in runtime has no raw path (generate_raw): the engine's own checks of settings "
                    "sent unchecked are not exercised")
        return None

    def run(self, case: ProbeCase) -> Probe:
        known = [KNOWN_ISSUES[case.known_issue]] if case.known_issue else []
        return self.check(case.resolve(self.model), case.expect, case.errors, case.must_reach, known)

    def summary(self) -> dict[str, Any]:
        """Counts for the run's report folder: outcomes per class, verdicts, known issues, worker starts."""
        return {"requests": sum(self.tally[kind] for kind in KINDS),
                "outcomes": {kind: self.tally[kind] for kind in KINDS},
                "counts": dict(self.tally), "worker_starts": self.client.starts}

    def close(self) -> None:
        self.client.close()


def session(model_path: Path, ep: str, gates: Gates, summary_path: Path,
            runtime: str | None = None) -> Iterator[Prober]:
    """A prober for a suite module (a generator for a fixture) on the runtime ``runtime`` names (a factory
    reference; None: onnxruntime-genai's); writes the counts when done."""
    prober = Prober.open(model_path, ep, gates, runtime)
    try:
        yield prober
    finally:
        prober.close()
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(prober.summary(), indent=2) + "\n", encoding="utf-8")


def write_reproducer(folder: Path, name: str, probe: Probe, model_path: Path, runtime: str | None = None) -> Path:
    """Save a failing request so that it replays outside pytest (``python -m harness.worker --replay``), on the
    runtime it ran on."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    replay = shlex.join(["python", "-m", "harness.worker", "--model", str(model_path), "--replay", str(path),
                         *(["--runtime", runtime] if runtime is not None else [])])
    path.write_text(json.dumps({"test": name, "verdict": probe.verdict.line, "request": probe.request,
                                "outcome": probe.outcome.to_json(), "replay": replay}, indent=2) + "\n",
                    encoding="utf-8")
    return path
