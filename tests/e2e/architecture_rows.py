"""One row of the architecture matrix (``test_architectures.py``): make a tiny random model of an architecture, run the
harness's structural suites on it as a user would (``pytest --model=DIR``, in a child process), and judge the run.

Random weights never end their turn, so the answer checks are left out or, for Foundry Local's chats, read for what
only they can show: a chat whose sole problems are the ones random weights cause (it ran to its token limit, it holds
control tokens, it is as blank as onnxruntime-genai's answer, it differs only where onnxruntime-genai's decode
stopped) proves that the model registered, loaded and answered as onnxruntime-genai does.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.locations import suites_dir

SUITES = ("test_template.py", "test_generation.py", "test_malformed.py", "test_foundry_local.py")
# Answer quality, out of scope on random weights: an answer that ends its turn.
DESELECT = "not test_greedy_answer_is_nonempty_and_ends_its_turn"
FOUNDRY_CHAT = "test_foundry_local.py::test_foundry_answers_like_onnxruntime_genai["
SOUND = ("passed", "xfailed", "unstable")  # xfailed: the suites' own known engine issues; unstable: a near-tie
RANDOM_WEIGHT_PROBLEMS = ("Foundry finished by 'length' after ", "Foundry's answer contains control tokens ")
EMPTY = "Foundry's answer is empty"  # blank: random weights explain it when onnxruntime-genai's answer is the same
SAME_ERROR = "harness: the same error as "
ROW_TIMEOUT_S = 600.0  # a healthy row takes under a minute: a hang fails it instead of the session
# onnxruntime-genai 0.18's Tokenizer.decode stops at an incomplete UTF-8 sequence, as U+FFFD, and drops the rest of
# the text; Foundry Local's streaming decode skips the incomplete bytes. Random weights emit lone lead bytes often.
DECODE_STOP = "\ufffd"


class UpstreamDefect(Exception):
    """The row failed exactly as its known upstream defect makes it fail (its xfail expects this, and only this)."""


@dataclass(frozen=True)
class Known:
    """A known upstream defect that fails a row: the text every one of the row's problems shows, and its cause."""

    signature: str
    cause: str  # one line
    owner: str  # the upstream project that owns the fix

    def mark(self) -> pytest.MarkDecorator:
        return pytest.mark.xfail(raises=UpstreamDefect, strict=True, reason=f"{self.cause} (owner: {self.owner})")


@dataclass(frozen=True)
class RowRun:
    """What the harness run of one row left: its exit status, its output and its results.json."""

    returncode: int
    output: str  # stdout and stderr
    results: dict[str, Any] | None  # None: the run ended before it wrote one (a build failure, a crash)


def make_model(architecture: str, out: Path, tokenizer_from: Path) -> None:
    """The tiny model, made in a child process (transformers stays out of the test process)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.testing.tiny_architectures",
            architecture,
            str(out),
            f"--tokenizer-from={tokenizer_from}",
        ],
        capture_output=True,
        text=True,
        check=False,
        encoding="utf-8",
    )
    assert done.returncode == 0, f"making the tiny {architecture} model failed:\n{done.stdout}{done.stderr}"


def run_harness(model: Path, work: Path, *args: str) -> RowRun:
    """``pytest --model=MODEL`` on the structural suites from a folder of its own, with a cache of its own."""
    reports = work / "reports"
    command = [sys.executable, "-m", "pytest", *(str(suites_dir() / suite) for suite in SUITES), f"--model={model}",
               f"--harness-cache-dir={work / 'cache'}", f"--harness-reports={reports}", "--harness-profile=smoke",
               "-p", "no:cacheprovider", "-k", DESELECT, "-q", *args]
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARNESS_")}
    process = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True, encoding="utf-8")
    try:
        output, _ = process.communicate(timeout=ROW_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its worker and build processes too
        output, _ = process.communicate()
        output += f"\n(killed after {ROW_TIMEOUT_S:.0f} s)"
    files = sorted(reports.glob("*/results.json"))
    results = json.loads(files[-1].read_text(encoding="utf-8")) if files else None
    return RowRun(process.returncode, output, results)


def drop_models(work: Path) -> None:
    """The model, its builds and the deployment folders (links to the builds' files); the logs and reports stay."""
    for folder in (work / "model", work / "cache", *(work / "reports").glob("*/foundry*")):
        shutil.rmtree(folder, ignore_errors=True)


def _texts(details: str) -> tuple[str, str] | None:
    """onnxruntime-genai's and Foundry Local's answers, as a Foundry chat check's failure prints them."""
    found = [re.search(rf"^  {who} \(\w+, \d+ tokens\): (.*)$", details, re.M)
             for who in ("onnxruntime-genai", "Foundry Local")]
    if found[0] is None or found[1] is None:
        return None
    return ast.literal_eval(found[0][1]), ast.literal_eval(found[1][1])


def decode_stopped(details: str, at: int) -> bool:
    """The answers differ only because onnxruntime-genai's decode stopped at an incomplete UTF-8 sequence: its text
    ends there with U+FFFD, and Foundry Local's goes on from everything before it."""
    texts = _texts(details)
    return texts is not None and texts[0][at:] == DECODE_STOP and texts[1].startswith(texts[0][:at])


def foundry_chat_problems(check: dict[str, Any]) -> list[str]:
    """A failed Foundry chat's problems that random weights do not explain."""
    message, details = check.get("message") or "", check.get("details") or ""
    first = message.splitlines()[0].removeprefix("Failed: ") if message else ""
    texts = _texts(details)
    left = []
    for problem in first.split("; "):
        differ = re.fullmatch(r"the answers differ from character (\d+)", problem)
        if problem.startswith(RANDOM_WEIGHT_PROBLEMS) or (differ and decode_stopped(details, int(differ[1]))):
            continue
        if problem == EMPTY and texts is not None and texts[0] == texts[1]:
            continue  # tied random embeddings echo the prompt's last token, a newline: blank, and the same in both
        left.append(problem)
    return left


def row_problems(run: RowRun) -> list[str]:
    """Everything wrong with a row's run (none: the architecture passed every structural check)."""
    if run.returncode not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        errors = [line for line in run.output.splitlines() if line.startswith("ERROR")]
        return [f"the harness exited {run.returncode}: " + ("\n".join(errors) or run.output[-2000:])]
    if run.results is None:
        return ["the harness wrote no results.json"]
    checks = run.results["tests"]
    problems = [f"no check of {suite} ran" for suite in SUITES
                if not any(check["id"].startswith(f"{suite}::") for check in checks)]
    for check in checks:
        if check["outcome"] in SOUND:
            continue
        if check["outcome"] == "failed" and check["id"].startswith(FOUNDRY_CHAT):
            problems += [f"{check['id']}: {problem}" for problem in foundry_chat_problems(check)]
        else:
            problems.append(f"{check['id']}: {check['outcome']}: {(check.get('message') or '')[:500]}")
    return problems


def summary(run: RowRun) -> dict[str, str]:
    """For the row's report (record_property): the build's time and, per suite, its checks sound of those run."""
    errors = [line for line in run.output.splitlines() if line.startswith("ERROR")]
    if run.results is None or run.returncode == pytest.ExitCode.USAGE_ERROR:  # the build failed: no check ran
        return {"build": (errors or [f"exit {run.returncode}, no results.json"])[0][:300]}
    checks = run.results["tests"]
    seconds = run.results.get("provenance", {}).get("build_seconds")
    found = {"build": f"{seconds:.1f} s" if isinstance(seconds, int | float) else "?"}
    for suite in SUITES:
        mine = [check for check in checks if check["id"].startswith(f"{suite}::")]
        sound = [check for check in mine if check["outcome"] in SOUND or (
            check["id"].startswith(FOUNDRY_CHAT) and check["outcome"] == "failed" and not foundry_chat_problems(check))]
        found[suite] = f"{len(sound)}/{len(mine)}"
    return found


def judge(run: RowRun, known: Known | None) -> None:
    """Pass, or fail with every problem; a row whose problems all show its known defect raises UpstreamDefect."""
    problems = row_problems(run)
    # The harness says an error once: the other checks it fails point back at the first ("the same error as ...").
    said = [problem for problem in problems if SAME_ERROR not in problem]
    if known is not None and said and all(known.signature in problem for problem in said):
        raise UpstreamDefect(f"{known.cause}: {said[0][:300]}")
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)
