"""The CI workflows, checked offline: the project's matrix (``.github/workflows/ci.yml``) and the example users copy
(``docs/github-actions.yml``).

First GitHub's workflow schema (check-jsonschema's vendored copy: actionlint's Python package downloads its binary
from GitHub at build time), then what a schema cannot see: the hosts of the matrix, steps that every runner's default
shell runs the same way (bash on Linux and macOS, PowerShell on Windows), cache keys per OS, architecture and Python,
installs that match the Makefile's, and the last job merging every leg.
"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.config.settings import SETTINGS_BY_NAME
from harness.testing.encodings import unencoded_calls

ROOT = Path(__file__).resolve().parents[2]
CI = ROOT / ".github" / "workflows" / "ci.yml"
EXAMPLE = ROOT / "docs" / "github-actions.yml"
MAKEFILE = ROOT / "Makefile"

LEGS = {("ubuntu-24.04", "3.11"), ("ubuntu-24.04", "3.12"), ("windows-2025", "3.11"), ("windows-2025", "3.12"),
        ("macos-15", "3.12"), ("windows-11-arm", "3.12")}
ACTIONS = {"actions/checkout": "v4", "actions/setup-python": "v5", "actions/cache": "v4", "actions/cache/restore": "v4",
           "actions/cache/save": "v4", "actions/upload-artifact": "v4", "actions/download-artifact": "v4"}
PORTABLE_PROGRAMS = ("python", "gh")
PYTHON_VERSION_REFS = ("matrix.python", "env.PYTHON_VERSION")
EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
# Words of letters, digits and . : / = + - (or "quoted text" without $, a backtick or \): alike in bash and PowerShell.
PLAIN_WORD = r'(?:[\w.:/=+-]|"[^"$`\\]*")+'
PLAIN_COMMAND = re.compile(rf"{PLAIN_WORD}(?:[ \t]+{PLAIN_WORD})*")


def load(path: Path) -> dict[str, Any]:
    workflow: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return workflow


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = job["steps"]
    return found


def run_commands(job: dict[str, Any]) -> list[str]:
    return [step["run"].strip() for step in steps(job) if "run" in step]


def schema_check(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           *map(str, paths)], capture_output=True, encoding="utf-8", timeout=120)


def unportable(command: str) -> str | None:
    """Why a `run:` in the runner's default shell would not run the same way in bash and PowerShell, or None."""
    lines = command.strip().splitlines()
    if len(lines) != 1:
        return "more than one command: PowerShell fails a step on the last command's exit code only"
    line = EXPRESSION.sub("X", lines[0])  # GitHub substitutes ${{ }} before any shell reads the line
    program = line.split()[0] if line.split() else ""
    if program not in PORTABLE_PROGRAMS:
        return f"runs {program!r}, not one of {PORTABLE_PROGRAMS} (python -m pip, not pip: the same interpreter)"
    if not PLAIN_COMMAND.fullmatch(line):
        return "shell syntax ($VAR, a pipe, a redirection, a glob, a backslash...) that bash and PowerShell read apart"
    return None


def linux_only(job: dict[str, Any]) -> bool:
    runs_on = job.get("runs-on")
    return isinstance(runs_on, str) and runs_on.startswith("ubuntu-")


def step_problems(job: dict[str, Any], step: dict[str, Any], tmp_path: Path, *, any_os: bool) -> list[str]:
    """What keeps a `run:` step from running on every OS its job may run on."""
    shell, script = step.get("shell"), step["run"]
    if shell is None:
        reason = unportable(script)
        return [f"{script!r}: {reason}"] if reason else []
    if shell == "python":
        return python_step_problems(script, tmp_path)
    if any_os or not linux_only(job):
        return [f"{script!r}: shell: {shell} in a job that may run on Windows or macOS"]
    return []


def python_step_problems(script: str, tmp_path: Path) -> list[str]:
    if "${{" in script:  # a substituted value would be Python code: pass it through env instead
        return ["a `shell: python` script with ${{ }} in its code"]
    source = tmp_path / "step.py"
    source.write_text(script, encoding="utf-8")
    compile(script, str(source), "exec")
    return [str(call) for call in unencoded_calls(source)]


def cache_key_problems(key: str) -> list[str]:
    wanted = {"runner.os": ("runner.os",), "runner.arch": ("runner.arch",), "the Python version": PYTHON_VERSION_REFS}
    return [f"{key!r} lacks {name}" for name, refs in wanted.items() if not any(ref in key for ref in refs)]


def cache_keys(workflow: dict[str, Any]) -> list[str]:
    keys = []
    for job in workflow["jobs"].values():
        for step in steps(job):
            if step.get("uses", "").startswith("actions/cache"):
                keys.append(step["with"]["key"])
                keys += str(step["with"].get("restore-keys", "")).splitlines()  # one key a line
    return keys


def makefile_commands() -> list[str]:
    """The Makefile's install and test-fast commands as CI runs them: ``python -m`` on the job's interpreter."""
    text = MAKEFILE.read_text(encoding="utf-8")
    model = re.search(r"^DEFAULT_MODEL := (\S+)$", text, re.MULTILINE)
    assert model is not None
    commands = []
    for line in text.splitlines():
        line = line.strip().replace("$(DEFAULT_MODEL)", model.group(1)).replace(" $(PYTEST_ARGS)", "")
        if line.startswith("$(BIN)/python -m pip install"):
            commands.append(line.replace("$(BIN)/", "").replace(" --quiet", ""))
        elif line.startswith(('$(BIN)/pytest tests -m "not e2e', '$(BIN)/pytest tests -m "serial and not e2e')):
            commands.append(line.replace("$(BIN)/pytest", "python -m pytest"))
    return commands


# GitHub's schema.

def test_both_workflows_match_githubs_schema() -> None:
    done = schema_check(CI, EXAMPLE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_fails_a_misspelt_key(tmp_path: Path) -> None:
    text = CI.read_text(encoding="utf-8")
    misspelt = tmp_path / "ci.yml"
    misspelt.write_text(text.replace("timeout-minutes:", "timeout-minute:", 1), encoding="utf-8")
    done = schema_check(misspelt)
    assert done.returncode == 1
    assert "'timeout-minute' was unexpected" in done.stdout


# The matrix.

def test_the_matrix_has_every_host_kind_users_have() -> None:
    job = load(CI)["jobs"]["legs"]
    legs = job["strategy"]["matrix"]["include"]
    assert {(leg["os"], leg["python"]) for leg in legs} == LEGS
    assert len(legs) == len(LEGS)
    assert job["strategy"]["fail-fast"] is False
    assert job["runs-on"] == "${{ matrix.os }}"


def test_only_windows_on_arm_may_fail() -> None:
    job = load(CI)["jobs"]["legs"]
    assert job["continue-on-error"] == "${{ matrix.allowed-to-fail || false }}"
    allowed = [leg["os"] for leg in job["strategy"]["matrix"]["include"] if leg.get("allowed-to-fail") is True]
    assert allowed == ["windows-11-arm"]
    assert "allowed-to-fail: true               # until torch ships a win_arm64 wheel" in CI.read_text(encoding="utf-8")


def test_each_leg_installs_as_the_makefile_does_then_runs_the_fast_tier_then_the_suites() -> None:
    commands = run_commands(load(CI)["jobs"]["legs"])
    expected = makefile_commands()
    assert len(expected) == 5  # pip's upgrade, the project, the default model, the fast tier, its timing tests
    suites = f"python -m pytest {SETTINGS_BY_NAME['reports_dir'].flag}=reports"
    assert [command for command in commands if command in expected or command == suites] == [*expected, suites]


def test_each_leg_uploads_its_reports_named_by_host() -> None:
    upload = next(step for step in steps(load(CI)["jobs"]["legs"]) if step.get("uses") == "actions/upload-artifact@v4")
    assert upload["if"] == "always()"
    assert upload["with"]["path"].split()[0] == "reports/"
    assert all(part in upload["with"]["name"] for part in ("runner.os", "runner.arch", "matrix.python"))


def test_the_merge_job_needs_every_leg_and_merges_their_runs() -> None:
    jobs = load(CI)["jobs"]
    merge = jobs["merge"]
    needs = merge["needs"] if isinstance(merge["needs"], list) else [merge["needs"]]
    assert set(needs) == set(jobs) - {"merge"}
    assert merge["if"] in ("always()", "${{ !cancelled() }}")
    assert "python -m harness merge legs --hosts 5 --out merged" in run_commands(merge)  # legs/<artifact>/<run>/
    assert 'cat merged/summary.md >> "$GITHUB_STEP_SUMMARY"' in run_commands(merge)
    download = next(step for step in steps(merge) if step.get("uses") == "actions/download-artifact@v4")
    leg_upload = next(step for step in steps(jobs["legs"]) if step.get("uses") == "actions/upload-artifact@v4")
    assert fnmatch.fnmatch(EXPRESSION.sub("X", leg_upload["with"]["name"]), download["with"]["pattern"])
    assert download["with"]["path"] == "legs"


# Portability of every step, in both workflows.

@pytest.mark.parametrize("path", [CI, EXAMPLE], ids=["ci", "example"])
def test_every_run_step_runs_on_every_os_its_job_may_run_on(path: Path, tmp_path: Path) -> None:
    workflow = load(path)
    problems = [problem for job in workflow["jobs"].values() for step in steps(job) if "run" in step
                for problem in step_problems(job, step, tmp_path, any_os=path == EXAMPLE)]
    assert problems == []


@pytest.mark.parametrize("command", [
    'python -m pytest tests -m "not e2e and not serial" -n 2',
    'python -m pip install -c constraints.txt -e ".[dev]"',
    'python -m pip install "${{ env.HARNESS_SPEC }}" --extra-index-url https://download.pytorch.org/whl/cpu',
    'gh pr comment "${{ github.event.pull_request.number }}" --body-file "${{ steps.report.outputs.run }}summary.md"',
])
def test_plain_commands_pass(command: str) -> None:
    assert unportable(command) is None


@pytest.mark.parametrize(("command", "reason"), [
    ('pip install "$HARNESS_SPEC"', "runs 'pip'"),  # the old example's install: bare pip, and $VAR
    ('python -m pip install "$HARNESS_SPEC"', "shell syntax"),  # $HARNESS_SPEC is empty in PowerShell
    ('cat run/summary.md >> "$GITHUB_STEP_SUMMARY"', "runs 'cat'"),
    ("python -m harness merge legs/* --out merged", "shell syntax"),  # PowerShell passes the * on
    ("python -m harness history reports | python -m x", "shell syntax"),
    ("python -m pip install -e .\\", "shell syntax"),
    ("python -m pip install -e .\npython -m pytest", "more than one command"),
    ("pytest --model=model/", "runs 'pytest'"),
])
def test_shell_specific_commands_fail(command: str, reason: str) -> None:
    found = unportable(command)
    assert found is not None and found.startswith(reason)


def test_bash_steps_pass_only_in_linux_jobs(tmp_path: Path) -> None:
    step = {"shell": "bash", "run": 'cat merged/summary.md >> "$GITHUB_STEP_SUMMARY"'}
    assert step_problems({"runs-on": "ubuntu-24.04"}, step, tmp_path, any_os=False) == []
    assert step_problems({"runs-on": "${{ matrix.os }}"}, step, tmp_path, any_os=False) != []
    assert step_problems({"runs-on": "ubuntu-24.04"}, step, tmp_path, any_os=True) != []  # the example: any runs-on


def test_python_steps_name_their_encoding_and_take_no_expressions(tmp_path: Path) -> None:
    assert python_step_problems("open('x', 'a')\n", tmp_path) == [f"{tmp_path / 'step.py'}:1: open without encoding="]
    assert python_step_problems("print('${{ github.ref }}')\n", tmp_path) != []


# Caches, actions, permissions.

@pytest.mark.parametrize("path", [CI, EXAMPLE], ids=["ci", "example"])
def test_every_cache_key_names_os_architecture_and_python(path: Path) -> None:
    keys = cache_keys(load(path))
    assert len(keys) >= 4
    assert [problem for key in keys for problem in cache_key_problems(key)] == []


def test_a_key_without_architecture_fails() -> None:
    old = "harness-model-${{ runner.os }}-${{ hashFiles('model/**') }}-${{ env.HARNESS_SPEC }}"  # the old example's
    assert cache_key_problems(old) == [f"{old!r} lacks runner.arch", f"{old!r} lacks the Python version"]


@pytest.mark.parametrize("path", [CI, EXAMPLE], ids=["ci", "example"])
def test_the_caches_hold_the_folders_pip_and_the_harness_write(path: Path) -> None:
    """A cache of a folder nothing writes restores nothing, silently."""
    workflow = load(path)
    cached = {step["with"]["path"] for job in workflow["jobs"].values() for step in steps(job)
              if step.get("uses", "").startswith("actions/cache")}
    for variable in ("PIP_CACHE_DIR", "HARNESS_CACHE_DIR"):
        folder = workflow["env"][variable]
        assert folder.startswith("${{ github.workspace }}/")
        assert folder.removeprefix("${{ github.workspace }}/") in cached
    setup = [step for job in workflow["jobs"].values() for step in steps(job)
             if step.get("uses", "").startswith("actions/setup-python")]
    assert all("cache" not in step.get("with", {}) for step in setup)  # setup-python's cache keys are its own


@pytest.mark.parametrize("path", [CI, EXAMPLE], ids=["ci", "example"])
def test_actions_are_pinned_by_major_version(path: Path) -> None:
    used = [step["uses"] for job in load(path)["jobs"].values() for step in steps(job) if "uses" in step]
    assert used and all(ACTIONS.get(use.partition("@")[0]) == use.partition("@")[2] for use in used), used


def test_ci_only_reads_the_repository() -> None:
    assert load(CI)["permissions"] == {"contents": "read"}


# The example's Python steps, run here on what they would find on a runner.

def example_script(name: str) -> tuple[str, dict[str, str]]:
    step = next(step for step in steps(load(EXAMPLE)["jobs"]["validate"]) if step.get("name") == name)
    return step["run"], dict(step.get("env", {}))


def run_script(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, env={**os.environ, **env}, capture_output=True,
                          encoding="utf-8", timeout=60)


def test_the_examples_report_step_posts_the_newest_runs_summary(tmp_path: Path) -> None:
    for run in ("20250101-000000-m-int4", "20250102-000000-m-int4"):
        (tmp_path / "reports" / run).mkdir(parents=True)
        (tmp_path / "reports" / run / "summary.md").write_text(f"verdict of {run} ✓\n", encoding="utf-8")
    (tmp_path / "history").mkdir()
    script, _ = example_script("Report")
    output, summary = tmp_path / "output", tmp_path / "summary"
    done = run_script(script, tmp_path, HISTORY=str(tmp_path / "history"), GITHUB_OUTPUT=str(output),
                      GITHUB_STEP_SUMMARY=str(summary))
    assert done.returncode == 0, done.stderr
    assert output.read_text(encoding="utf-8") == "run=reports/20250102-000000-m-int4/\n"
    assert summary.read_text(encoding="utf-8") == "verdict of 20250102-000000-m-int4 ✓\n"


def test_the_examples_report_step_says_when_there_is_no_report(tmp_path: Path) -> None:
    script, _ = example_script("Report")
    done = run_script(script, tmp_path, HISTORY=str(tmp_path), GITHUB_OUTPUT=os.devnull, GITHUB_STEP_SUMMARY=os.devnull)
    assert done.returncode == 1
    assert "no reports/*/summary.md" in done.stderr


def test_the_examples_history_step_keeps_the_last_30_runs_without_foundry(tmp_path: Path) -> None:
    history = tmp_path / "harness-history"
    for day in range(1, 31):
        (history / f"202501{day:02d}-000000-m-int4").mkdir(parents=True)
    run = tmp_path / "reports" / "20250201-000000-m-int4"
    (run / "foundry").mkdir(parents=True)
    (run / "results.json").write_text("{}", encoding="utf-8")
    script, env = example_script("Add this run to the history (main only)")
    assert env == {"RUN": "${{ steps.report.outputs.run }}"}
    done = run_script(script, tmp_path, HISTORY=str(history), RUN="reports/20250201-000000-m-int4/")
    assert done.returncode == 0, done.stderr
    kept = sorted(path.name for path in history.iterdir())
    assert len(kept) == 30 and kept[0] == "20250102-000000-m-int4" and kept[-1] == run.name
    assert sorted(path.name for path in (history / run.name).iterdir()) == ["results.json"]


# python -m harness, which the merge job runs.

def test_python_m_harness_is_the_harness_command() -> None:
    done = subprocess.run([sys.executable, "-m", "harness", "compare", "no-such-run", "no-such-run-either"],
                          capture_output=True, encoding="utf-8", timeout=60, cwd=ROOT)
    assert done.returncode == 2, done.stderr  # the CLI's usage error, through sys.exit
    assert done.stderr.startswith("harness: ")
