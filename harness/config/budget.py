"""``--harness-budget``: size a profile's sample counts to a time budget from the model's measured speed.

A run's predicted duration is a fixed part plus, for each sample count, its cost per unit times the count, both
measured on the default model (``benchmarks/budget_costs.py``), the model-bound share scaled by how much slower
this model decodes, and the answer-bound suites' share by how much longer it answers (its ``Pace``, measured at
start). The counts then shrink by the largest common factor whose prediction fits the budget, never below the
floor their statistic needs, and the run says what each cut costs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from harness.config.profiles import BUILTIN_PROFILES, Profile
from harness.length_plan import planned_lengths

if TYPE_CHECKING:
    from harness.runtime.protocol import Runtime

SMOKE = next(profile for profile in BUILTIN_PROFILES if profile.name == "smoke")

# Measured on the default model (int4, cpu) on the CI machine kind (AMD EPYC, AVX-512, 2 cores) by
# ``python benchmarks/budget_costs.py``: each shipped suite's seconds in a warm smoke run, and what each unit of a
# sample count adds, between the smoke (114 s) and the full profile (435 s) timed then (a benchmark round lost
# the one-token benchmark's share since: 3.662 -> 2.475 s).
SMOKE_SUITE_SECONDS = {"test_benchmarks.py": 16.2, "test_cases.py": 10.5, "test_foundry_local.py": 7.9,
                       "test_fuzz.py": 9.6, "test_generation.py": 0.7, "test_input_length.py": 10.9,
                       "test_malformed.py": 16.3, "test_memory.py": 34.5, "test_parity.py": 8.8,
                       "test_template.py": 0.1}
OUTSIDE_SECONDS = 2.0  # the session outside its checks: collection, the cache lookup, the reports
SECONDS_PER_UNIT = {"template_examples": 0.002854, "memory_generations": 0.4264, "load_cycles": 0.916,
                    "foundry_cycles": 2.122, "fuzz_examples": 0.2988, "benchmark_rounds": 2.475}
LENGTH_SUITE = "test_input_length.py"  # the suite max_prompt_tokens drives
COUNT_SUITES = {"template_examples": "test_template.py", "memory_generations": "test_memory.py",
                "load_cycles": "test_memory.py", "foundry_cycles": "test_memory.py", "fuzz_examples": "test_fuzz.py",
                "benchmark_rounds": "test_benchmarks.py"}
# A prompt of n tokens answered with the length suite's 32 tokens: prefill is linear in n, attention adds n^2;
# fitted to the length suite's smoke (lengths up to 2,048 tokens: 10.9 s for 3,409) and full runs (up to 8,160: 53 s).
SECONDS_PER_PROMPT_TOKEN = 2.73e-3
SECONDS_PER_PROMPT_TOKEN_SQUARED = 2.97e-7
DEFAULT_CONTEXT = 8192  # the default model's, whose smoke counts the suite seconds are for
# Computing the parity reference when it is not cached yet (benchmarks/scale.py, fp32, one thread), an upper bound:
# 400 s per billion parameters fits the default model (54 s predicted, 50 s measured) and a random-init 1.5B model
# whose answers run to every 48-token limit (617 s, 608 s); Qwen2.5-Coder-0.5B's answers stop sooner (252 s, 108 s).
REFERENCE_SECONDS_PER_PARAMETER = 400e-9
REFERENCE_DECODE_TPS = 170.0  # the default model's decode speed there
MODEL_BOUND = 0.9  # share of a run that scales with the model's speed (generation, worker requests, loads)
# Chats whose answer length says how long the model answers: the default model ends each turn in 8 and 11 tokens;
# a model that runs on past ANSWER_PROBE_TOKENS is taken to run to the suites' limit (cases, Foundry and generation
# answer within 96 tokens), which a random-init model does on every chat.
PACE_CHATS = (({"role": "user", "content": "Which city is the capital of Germany?"},),
              ({"role": "user", "content": "What is the biggest planet in our solar system?"},))
ANSWER_PROBE_TOKENS = 24
ANSWER_LIMIT = 96
REFERENCE_ANSWER_TOKENS = 9.5  # the default model's mean over PACE_CHATS
# Share of each answer-bound suite's time that grows with the answers' length, fitted to a random-init Qwen2.5-1.5B
# smoke run whose answers ran to every limit (10.1x the default model's): cases took 3.9x, Foundry 5.1x and
# generation 7.5x their time predicted from decode speed alone (benchmarks/scale.py, 1,919 s); the cases suite of a
# random-init Phi-3.5-mini took 4.0x.
ANSWER_SHARE = {"test_cases.py": 0.32, "test_foundry_local.py": 0.45, "test_generation.py": 0.7}
# The smallest count each statistic still works with.
FLOORS = {"template_examples": 5, "memory_generations": 20, "load_cycles": 3, "foundry_cycles": 2,
          "max_prompt_tokens": 256, "fuzz_examples": 5, "benchmark_rounds": 3}


@dataclass(frozen=True)
class Pace:
    """How fast the model decodes and how long it answers, measured at start (``measure_pace``)."""

    decode_tps: float
    answer_tokens: float = REFERENCE_ANSWER_TOKENS  # mean over PACE_CHATS, a run to the probe's limit as ANSWER_LIMIT

    def slowdown(self) -> float:
        """How much longer a run takes on this model than on the default model, from decode speed alone."""
        return (1 - MODEL_BOUND) + MODEL_BOUND * REFERENCE_DECODE_TPS / max(self.decode_tps, 1e-6)

    def verbosity(self) -> float:
        """How many times the default model's length this model's answers run to."""
        return self.answer_tokens / REFERENCE_ANSWER_TOKENS

    def describe(self) -> str:
        return (f"the model decodes {self.decode_tps:.0f} tokens/s ({self.decode_tps / REFERENCE_DECODE_TPS:.2f}x the "
                f"default model's) and answers in {self.answer_tokens:.0f} tokens ({self.verbosity():.1f}x)")


def measure_pace(runtime: Runtime, probes: int = 3) -> Pace:
    """The loaded model's pace. Decode tokens/s: the median of three 32-token generations after a warm-up (one
    varies by 15% on a shared host; about 0.7 s in all on the default model). Answer length: greedy answers to
    PACE_CHATS, stopped at ANSWER_PROBE_TOKENS (0.5 s on the default model; 48 tokens at 6 tokens/s on a random-init
    3.9B model that never ends its turn)."""
    import statistics

    from harness.errors import RuntimeFailure
    from harness.runtime.protocol import SearchOptions

    runtime.generate("Hello.", SearchOptions(max_new_tokens=4, margins=False))
    rates = []
    for _ in range(probes):
        probe = runtime.generate("Tell me about the sea.", SearchOptions(max_new_tokens=32, min_new_tokens=32,
                                                                          margins=False))
        decoding = probe.total_seconds - probe.ttft
        rates.append((probe.output_tokens - 1) / decoding if decoding > 0 and probe.output_tokens > 1
                     else float("inf"))
    lengths = []
    for chat in PACE_CHATS:
        try:
            answer = runtime.generate(chat, SearchOptions(max_new_tokens=ANSWER_PROBE_TOKENS, margins=False))
        except RuntimeFailure:  # no chat template, or one that fails: the template suite says so; pace as default
            return Pace(statistics.median(rates))
        lengths.append(ANSWER_LIMIT if answer.stop_reason == "length" else answer.output_tokens)
    return Pace(statistics.median(rates), statistics.mean(lengths))


def _cost(name: str, before: int, after: int) -> str:
    """What shrinking a count from ``before`` to ``after`` costs the statistic it feeds."""
    if name in ("memory_generations", "load_cycles", "foundry_cycles"):
        return f"the leak slope's 95% interval widens {(before / after) ** 1.5:.1f}x"
    if name == "benchmark_rounds":
        return f"a median's noise grows {math.sqrt(before / after):.1f}x"
    if name in ("fuzz_examples", "template_examples"):
        return (f"a defect in 5% of inputs is found with probability {1 - 0.95 ** after:.0%} "
                f"instead of {1 - 0.95 ** before:.0%}")
    return f"prompts above {after} tokens go untested"


def _prompt_tokens(context_length: int, cap: int) -> int:
    """What a cap on the prompt length costs: the tokens of every prompt the length suite then measures
    (prefill is about linear in them; the malformed suite's whole-context prompt runs only uncapped)."""
    return sum(planned_lengths(context_length, cap))


def counts_of(profile: Profile, context_length: int) -> dict[str, int]:
    """The profile's sample counts in the units their costs are measured in (``max_prompt_tokens`` as the
    prompt tokens it plans; uncapped means the context)."""
    counts = {name: int(getattr(profile, name)) for name in FLOORS if name != "max_prompt_tokens"}
    counts["max_prompt_tokens"] = _prompt_tokens(context_length, profile.max_prompt_tokens or context_length)
    return counts


def prompt_seconds(tokens: int) -> float:
    """A prompt of ``tokens`` tokens prefilled and answered with 32 tokens, on the default model."""
    return SECONDS_PER_PROMPT_TOKEN * tokens + SECONDS_PER_PROMPT_TOKEN_SQUARED * tokens**2


def predict_suites(profile: Profile, context_length: int, pace: Pace) -> dict[str, float]:
    """Seconds each shipped suite takes: its smoke time on the default model, plus what each count adds or saves
    against smoke, its prompts' own cost for the length suite (and the malformed suite's whole-context prompt, which
    runs uncapped), scaled by the model's speed, and an answer-bound suite's share by its answers' length."""
    counts, smoke = counts_of(profile, context_length), counts_of(SMOKE, DEFAULT_CONTEXT)
    seconds = dict(SMOKE_SUITE_SECONDS)
    for name, suite in COUNT_SUITES.items():
        seconds[suite] += SECONDS_PER_UNIT[name] * (counts[name] - smoke[name])
    cap = profile.max_prompt_tokens
    seconds["test_input_length.py"] = sum(map(prompt_seconds, planned_lengths(context_length, cap)))
    if cap is None or cap >= context_length - 1:
        seconds["test_malformed.py"] += prompt_seconds(context_length - 1)
    slowdown, longer = pace.slowdown(), pace.verbosity() - 1
    return {suite: max(value, SMOKE_SUITE_SECONDS[suite] / 10) * slowdown * (1 + ANSWER_SHARE.get(suite, 0.0) * longer)
            for suite, value in seconds.items()}


def predict(profile: Profile, context_length: int, pace: Pace, suites: Collection[str] | None = None,
            correction: float = 1.0) -> float:
    """Seconds the profile takes on a model of this ``pace``: of ``suites`` (None: every shipped suite), times
    ``correction`` (how the run's suites so far went against their prediction)."""
    predicted = predict_suites(profile, context_length, pace)
    chosen = predicted if suites is None else {name: predicted[name] for name in suites if name in predicted}
    return (OUTSIDE_SECONDS * pace.slowdown() + sum(chosen.values())) * correction


@dataclass(frozen=True)
class Scaling:
    profile: Profile  # the sample counts to run
    budget_s: float  # what was left of the budget when the profile was fitted
    pace: Pace  # this model's, measured at start
    predicted_s: float  # the unscaled profile's, at that speed
    scaled_s: float  # the scaled profile's
    factor: float  # 1: the profile fits the budget
    changes: tuple[str, ...]  # one line per count cut, with what it costs
    suites: dict[str, float] = field(default_factory=dict)  # each shipped suite's predicted seconds, as scaled
    spent_s: float = 0.0  # the budget spent before the fit (the build, the model's load, the speed probe)
    reserved_s: float = 0.0  # the budget kept for work no count changes (a reference to compute, an A/B baseline)

    def lines(self) -> list[str]:
        notes = [f"{self.spent_s:.0f} s spent before the first check" if self.spent_s >= 1 else "",
                 f"{self.reserved_s:.0f} s kept for work no count changes (a parity reference to compute, an A/B "
                 "baseline to time)" if self.reserved_s >= 1 else ""]
        noted = f" ({', '.join(note for note in notes if note)})" if any(notes) else ""
        total = round(self.budget_s + self.spent_s + self.reserved_s, 3)
        head = (f"budget {total:g} s{noted}: {self.pace.describe()}; the {self.profile.name} profile would take "
                f"about {self.predicted_s:.0f} s")
        if self.factor >= 1:
            return [f"{head}: it fits, nothing scaled"]
        shown = math.floor(self.factor * 100) / 100  # 0.999 reads 0.99: something was cut
        cut = (f"sample counts scaled by {shown:.2f}, to about {self.scaled_s:.0f} s" if self.scaled_s <= self.budget_s
               else f"every sample count at its floor, about {self.scaled_s:.0f} s: the budget is too short for it")
        return [f"{head}: {cut}", *(f"  {change}" for change in self.changes)]


def _scaled(profile: Profile, factor: float, context_length: int) -> Profile:
    cuts: dict[str, Any] = {}
    for name, floor in FLOORS.items():
        value = getattr(profile, name)
        if name == "max_prompt_tokens" and value is None:
            value = context_length
        if value <= floor:
            continue
        cut = min(value, max(floor, round(value * factor)))
        if name == "max_prompt_tokens":  # down to a length the suite measures, so the cap says what runs
            cut = max([n for n in planned_lengths(context_length, cut) if n >= floor], default=floor)
        cuts[name] = cut
    return replace(profile, **cuts)


def _largest_factor(fits: Callable[[float], bool]) -> float:
    """The largest factor in (0, 1) for which ``fits`` holds (0 if none), to 1/1000."""
    low, high = 0.0, 1.0
    while high - low > 1e-3:
        middle = (low + high) / 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def fit(profile: Profile, budget_s: float, pace: Pace, context_length: int, spent_s: float = 0.0,
        suites: Collection[str] | None = None, correction: float = 1.0, reserved_s: float = 0.0) -> Scaling:
    """``profile`` with its sample counts scaled so that ``suites`` (None: every shipped suite) finish near
    ``budget_s`` (what is left after ``spent_s`` and ``reserved_s``) at ``pace``, their prediction times
    ``correction``."""
    def seconds(candidate: Profile) -> float:
        return predict(candidate, context_length, pace, suites, correction)

    predicted = seconds(profile)
    factor = 1.0 if predicted <= budget_s else _largest_factor(
        lambda f: seconds(_scaled(profile, f, context_length)) <= budget_s)
    scaled = profile if factor >= 1 else _scaled(profile, factor, context_length)
    changes = tuple(f"{name} {'the context' if before is None else before} -> {after}: "
                    f"{_cost(name, before or context_length, after)}"
                    for name in FLOORS
                    if (after := getattr(scaled, name)) != (before := getattr(profile, name)))
    per_suite = {name: value * correction for name, value in predict_suites(scaled, context_length, pace).items()}
    return Scaling(scaled, budget_s, pace, predicted, seconds(scaled), factor, changes, per_suite, spent_s,
                   reserved_s)


def ab_seconds(profile: Profile, context_length: int, pace: Pace, min_pairs: int) -> float:
    """What ``--harness-ab`` adds to the benchmark suite: its rounds raised to the A/B floor (``min_pairs``,
    ``harness.checks.ab.AB_MIN_PAIRS``), each timing the baseline too (taken as fast as the model under test)."""
    pairs = replace(profile, benchmark_rounds=max(profile.benchmark_rounds, min_pairs))
    suite = "test_benchmarks.py"
    return 2 * predict_suites(pairs, context_length, pace)[suite] - predict_suites(profile, context_length, pace)[suite]


@dataclass
class BudgetClock:
    """``--harness-budget`` through a run. Before each suite the sample counts are fitted again to what is left of
    the budget, for the suites still to run, their prediction corrected by how the suites so far went against
    theirs: a model whose answers run longer than the default model's is caught up with, not overrun."""

    budget_s: float
    opened_at: float  # time.monotonic() when the run started: the build and the load count too
    pace: Pace
    profile: Profile  # the profile as registered, before any cut
    context_length: int
    suites: tuple[str, ...]  # the suite modules this run holds, in order
    cold_s: Mapping[str, float] = field(default_factory=dict)  # seconds a suite adds that its counts do not change
    scaling: Scaling | None = None  # the latest fit
    started: dict[str, float] = field(default_factory=dict)  # suite -> when it started (monotonic)
    predicted: dict[str, float] = field(default_factory=dict)  # suite -> seconds predicted at its start
    took: dict[str, float] = field(default_factory=dict)  # suite -> seconds it took

    def correction(self) -> float:
        """Seconds the finished suites took over the seconds predicted for them (1 before any finished); a suite
        predicted under a second says too little to count."""
        done = [name for name in self.took if self.predicted.get(name, 0.0) >= 1.0]
        if not done:
            return 1.0
        ratio = sum(self.took[name] for name in done) / sum(self.predicted[name] for name in done)
        return min(max(ratio, 0.5), 4.0)

    def enter(self, suite: str, now: float) -> list[str]:
        """Suite ``suite`` starts at ``now``: the previous one is timed, the counts refitted; the lines to print."""
        if self.started:
            previous = next(reversed(self.started))
            self.took.setdefault(previous, now - self.started[previous])
        self.started[suite] = now
        spent = now - self.opened_at
        remaining = [name for name in self.suites if name not in self.started or name == suite]
        before = self.scaling
        cold = sum(self.cold_s.get(name, 0.0) for name in remaining)  # not scaled: the counts do not change it
        self.scaling = fit(self.profile, self.budget_s - spent - cold, self.pace, self.context_length, spent,
                           remaining, self.correction(), cold)
        self.predicted[suite] = self.scaling.suites.get(suite, 0.0) + self.cold_s.get(suite, 0.0)
        lines = self.scaling.lines() if before is None else []
        if suite in SMOKE_SUITE_SECONDS:
            corrected = f", x{self.correction():.2f} after the suites so far" if self.took else ""
            lines.append(f"{suite}: about {self.predicted[suite]:.0f} s predicted{corrected}; "
                         f"{self.budget_s - spent:.0f} s of the {self.budget_s:g} s budget left")
        if before is not None:
            lines += self._refit_lines(before, remaining, spent, cold)
        return lines

    def _refit_lines(self, before: Scaling, remaining: Collection[str], spent: float, cold: float) -> list[str]:
        """What a refit changed in the counts of the suites still to run, and whether they overrun even so."""
        assert self.scaling is not None
        changed = [f"{name} {getattr(before.profile, name)} -> {getattr(self.scaling.profile, name)}"
                   for name in FLOORS if COUNT_SUITES.get(name, LENGTH_SUITE) in remaining
                   and getattr(before.profile, name) != getattr(self.scaling.profile, name)]
        lines = [f"  counts refitted: {', '.join(changed)}"] if changed else []
        finish = spent + cold + self.scaling.scaled_s
        if finish > self.budget_s * 1.02:
            lines.append(f"  even at these counts the run needs about {finish:.0f} s of the {self.budget_s:g} s "
                         "budget: it will overrun")
        return lines
