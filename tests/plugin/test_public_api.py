"""The public API for writing suites: the README's worked example runs as written, gates, profiles and
builders come through hooks beside the built-in ones, and the fixtures are the ``harness_`` ones."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

import harness
from harness.locations import suites_dir
from harness.testing.fakes import write_hf_folder

README = Path(__file__).resolve().parents[2] / "README.md"

# Fakes behind the hooks, as the project's other plugin tests wire them; the example's own conftest sits
# in its folder below, as a user's would.
FAKES = """
import os
from harness import Profile
from harness.testing.fakes import FakeBuilder, FakeRuntime

def make_builder(settings):
    return FakeBuilder()

def pytest_harness_builders(config):
    return {"model-builder": make_builder}

def make_runtime(path, ep):
    return FakeRuntime(path, answer=lambda prompt: os.environ.get("FAKE_ANSWER", "Paris."))

def pytest_harness_runtime_factory(config):
    return make_runtime
"""


def readme_example() -> dict[str, str]:
    """The files of the README's "Writing your own suite" example: each python block named by its first line."""
    section = README.read_text(encoding="utf-8").split("## Writing your own suite", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n# (\S+\.py)\n(.*?)```", section, flags=re.S)
    files = dict(blocks[:2])
    assert set(files) == {"conftest.py", "test_brevity.py"}, f"the README example changed its files: {list(files)}"
    return files


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytester.makeconftest(FAKES)
    for name, text in readme_example().items():
        (pytester.path / "own").mkdir(exist_ok=True)
        (pytester.path / "own" / name).write_text(text, encoding="utf-8")
    for name in ("HARNESS_MODEL", "HARNESS_PROFILE", "HARNESS_BUILDER", "FAKE_ANSWER"):
        monkeypatch.delenv(name, raising=False)
    return pytester.path


def run(pytester: pytest.Pytester, project: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest(f"--model={write_hf_folder(project / 'hf')}",
                              f"--harness-cache-dir={project / 'cache'}", "-p", "no:cacheprovider", *args)


def test_readme_example_passes_on_a_brief_model_and_records_its_gate(pytester: pytest.Pytester,
                                                                      project: Path) -> None:
    result = run(pytester, project, "own", "-q")
    cases = result.parseoutcomes()
    assert cases.get("passed", 0) > 5 and "failed" not in cases, result.stdout.str()
    results = json.loads(next((project / "reports").glob("*/results.json")).read_text(encoding="utf-8"))
    assert results["gates"]["answer_words_max"] == {"value": 60, "origin": "default", "bound": "max",
                                                    "unit": " words"}


def test_readme_example_fails_a_wordy_model_and_its_gate_is_set_like_a_builtin(
    pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ANSWER", "Paris is the capital of France and its largest city.")
    result = run(pytester, project, "own", "--gate", "answer_words_max=5")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*10 words, answer_words_max at most 5 words (the command line)*"])
    assert run(pytester, project, "own", "--gate", "answer_words_max=10").ret == pytest.ExitCode.OK


def test_a_gate_declared_twice_stops_the_session_in_one_line(pytester: pytest.Pytester, project: Path) -> None:
    (project / "own" / "conftest.py").write_text(
        "from harness import Gate\n\ndef pytest_harness_gates(config):\n"
        "    return [Gate('parity_ppl_ratio_max', 2.0, 'max', 'x', 'a clash with a built-in gate')]\n",
        encoding="utf-8",
    )
    result = run(pytester, project, "own")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: harness: gate parity_ppl_ratio_max is declared twice "
                                 "(pytest_harness_gates); rename one of them"])


PROFILE_AND_BUILDER = """
from harness import Profile
from harness.testing.fakes import FakeBuilder

def pytest_harness_profiles(config):
    return [Profile("tiny", template_examples=2, memory_generations=4, load_cycles=1, foundry_cycles=1,
                    max_prompt_tokens=64, fuzz_examples=2, benchmark_rounds=1)]

def make_mine(settings):
    return FakeBuilder(name="mine")

def pytest_harness_builders(config):
    return {"mine": make_mine}
"""


def test_a_conftest_adds_a_profile_and_a_builder(pytester: pytest.Pytester, project: Path) -> None:
    (project / "own" / "conftest.py").write_text(PROFILE_AND_BUILDER, encoding="utf-8")
    (project / "own" / "test_brevity.py").write_text(
        "def test_profile(harness_profile, harness_model):\n"
        "    assert harness_profile.name == 'tiny' and harness_profile.benchmark_rounds == 1\n", encoding="utf-8")
    result = run(pytester, project, "own", "--harness-profile=tiny", "--builder=mine")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["harness: precision int4, builder mine (*), ep cpu, profile tiny, *"])
    unknown = run(pytester, project, "own", "--harness-profile=huge")
    unknown.stderr.fnmatch_lines(["ERROR: harness: --harness-profile 'huge' (from the command line) is not one of "
                                  "tiny, smoke, full"])


def test_suites_use_only_prefixed_fixtures_and_the_public_types() -> None:
    """No unprefixed harness fixture enters a project's test modules; the suites import the public types."""
    from harness import fixtures as fixture_module

    fixtures = [name for name, value in vars(fixture_module).items() if hasattr(value, "_fixture_function_marker")
                or type(value).__name__ == "FixtureFunctionDefinition"]
    assert fixtures and all(name.startswith("harness_") for name in fixtures), fixtures
    for name in harness.__all__:
        assert getattr(harness, name) is not None
    for suite in suites_dir().glob("test_*.py"):
        assert "configured_cases" not in suite.read_text(encoding="utf-8")



def test_a_harness_error_anywhere_is_one_failure_line(pytester: pytest.Pytester, project: Path) -> None:
    """The one error path: raised in a fixture or a check, a HarnessError is its message, prefixed once."""
    (project / "own" / "test_brevity.py").write_text(
        "import pytest\nfrom harness import HarnessError\n\n"
        "@pytest.fixture\ndef broken():\n    raise HarnessError('the fixture cannot work; fix it')\n\n"
        "def test_fixture(broken):\n    pass\n\n"
        "def test_check(harness_model):\n    raise HarnessError('the check cannot work; fix it')\n", encoding="utf-8")
    result = run(pytester, project, "own")
    result.assert_outcomes(failed=1, errors=1)
    result.stdout.fnmatch_lines(["*_ ERROR at setup of test_fixture _*", "harness: the fixture cannot work; fix it",
                                 "*_ test_check _*", "harness: the check cannot work; fix it"])
    assert "Traceback" not in result.stdout.str() and "raise HarnessError" not in result.stdout.str()


def test_a_budget_fits_the_profile_to_a_slow_model_and_says_what_it_cut(pytester: pytest.Pytester,
                                                                         project: Path) -> None:
    (project / "own" / "conftest.py").write_text(
        "from harness.testing.fakes import FakeRuntime\n\ndef slow(path, ep):\n"
        "    return FakeRuntime(path, delay_per_token_s=0.02)\n\n"
        "def pytest_harness_runtime_factory(config):\n    return slow\n", encoding="utf-8")
    (project / "own" / "test_brevity.py").write_text(
        "def test_profile(harness_profile):\n"
        "    assert harness_profile.memory_generations == 20 and harness_profile.benchmark_rounds == 3\n",
        encoding="utf-8",
    )
    result = run(pytester, project, "own", "--harness-profile=smoke", "--harness-budget=10s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["harness: budget 10 s*: the model decodes * tokens/s (0.* the default model's) and "
                                 "answers in * tokens (*x); the smoke profile would take about * s: every sample "
                                 "count at its floor, about * s: the budget is too short for it",
                                 "harness:   memory_generations 40 -> 20: the leak slope's 95% interval widens 2.8x"])
    provenance = json.loads(next((project / "reports").glob("*/provenance.json")).read_text(encoding="utf-8"))
    assert provenance["budget"][0].startswith("budget 10 s")
    bad = run(pytester, project, "own", "--harness-budget=soon")
    bad.stderr.fnmatch_lines(["ERROR: harness: --harness-budget 'soon' (from the command line) is not a duration "
                              "above zero, e.g. 150s, 2.5m or 1h"])


def test_every_harness_fixture_is_in_the_readmes_table(pytestconfig: pytest.Config) -> None:
    """A suite's author finds each fixture the plugin offers in "Writing your own suite"."""
    section = README.read_text(encoding="utf-8").split("## Writing your own suite", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(harness_\w+)`", section))
    manager = pytestconfig.pluginmanager.get_plugin("harness-fixtures")
    markers = {name: getattr(getattr(manager, name), "_fixture_function_marker", None) for name in dir(manager)
               if name.startswith("harness_")}
    offered = {name for name, marker in markers.items() if marker is not None and not marker.autouse}  # not internal
    assert offered, "no fixture found: the plugin's name or pytest's fixture marker changed"
    assert offered <= listed, f"missing from the README's fixture table: {sorted(offered - listed)}"


def _harness_imports(tree: ast.AST) -> list[tuple[int, str, list[str]]]:
    """Each import of the harness in a module: its line, the module imported from and the names."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names
                      if alias.name == "harness" or alias.name.startswith("harness.")]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module is not None and (
                node.module == "harness" or node.module.startswith("harness.")):
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return found


def test_the_shipped_suites_import_only_the_public_api() -> None:
    """The suites are what a user copies: each imports from the harness only ``from harness import NAME`` of public
    names, never a submodule (``harness.checks...``), whose layout is the harness's own to change."""
    suites = sorted(suites_dir().glob("*.py"))
    assert len(suites) > 10, suites
    problems = []
    for suite in suites:
        for line, module, names in _harness_imports(ast.parse(suite.read_text(encoding="utf-8"), str(suite))):
            where = f"{suite.name}:{line}"
            if module != "harness" or not names:
                problems.append(f"{where}: imports {module} (only `from harness import ...` is public)")
            problems += [f"{where}: {name} is not in harness.__all__" for name in names if name not in harness.__all__]
    assert not problems, "\n".join(problems)


def test_the_guard_on_the_suites_imports_sees_every_form() -> None:
    tree = ast.parse("import harness\nimport harness.plugin as p\nfrom harness.checks import lengths\n"
                     "from harness import Case, plugin\nfrom . import harness_like\n"
                     "def f():\n    from harness.text import clip\n")
    assert _harness_imports(tree) == [(1, "harness", []), (2, "harness.plugin", []),
                                      (3, "harness.checks", ["lengths"]), (4, "harness", ["Case", "plugin"]),
                                      (7, "harness.text", ["clip"])]


def test_every_public_name_is_in_the_readmes_table() -> None:
    """The README's table of what ``from harness import`` gives names every public name, and nothing else."""
    section = README.read_text(encoding="utf-8").split("## Writing your own suite", 1)[1].split("\n## ", 1)[0]
    table = section.split("| `from harness import` |", 1)[1].split("\n\n", 1)[0]
    listed = {name for row in table.splitlines()[2:] for name in re.findall(r"`(\w+)`", row.split(" | ")[0])}
    public = set(harness.__all__)
    assert not public - listed, f"missing from the README's table: {sorted(public - listed)}"
    assert not listed - public, f"in the README's table but not public: {sorted(listed - public)}"

