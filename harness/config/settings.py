"""One typed, frozen configuration for a run, resolved from CLI > environment > files > defaults.

Every setting is declared once in ``SETTINGS``; that table generates the command-line options,
the ini keys, the environment variable names, the ``[tool.harness]`` keys and the docs.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.capacity.memory import parse_size
from harness.errors import ConfigError
from harness.locations import default_cache_dir
from harness.shard import Shard, parse_shard

UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(raw: str) -> float:
    """Seconds from ``90``, ``90s``, ``2.5m``, ``3min`` or ``1h``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*", raw.lower())
    if match is None or float(match.group(1)) <= 0:
        raise ValueError("is not a duration above zero, e.g. 150s, 2.5m or 1h")
    return float(match.group(1)) * UNITS[match.group(2) or "s"]

PRECISIONS = ("int4", "int8", "fp16", "fp32")
# Settings whose values name an entry of a registry the plugins contribute to (harness.hookspecs), with
# the built-in names, for resolving without a pytest session.
REGISTERED = ("profile", "builder")
BUILTIN_NAMES: Mapping[str, tuple[str, ...]] = {"profile": ("smoke", "full"), "builder": ("olive", "model-builder")}
INJECTION_POLICIES = ("warn", "fail")
UNSTABLE_POLICIES = ("warn", "fail")
REFERENCE_PRECISIONS = ("auto", "fp32", "bf16")
ACCURACY_LEVEL_CHOICES = ("0", "1", "2", "3", "4")  # onnxruntime's MatMulNBits accuracy_level values
TABLES = ("model_config", "gates")  # [tool.harness.<name>] sub-tables, passed through as mappings
PATH_METAVARS = ("PATH", "DIR", "FILE")  # settings whose values are paths
# Execution providers the builders know by name; only the ones this onnxruntime build
# actually offers can run (checked in ``check_execution_provider``).
EXECUTION_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "dml": "DmlExecutionProvider",
    "webgpu": "WebGpuExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f"is not one of {', '.join(options)}")
        return value

    return parse


def _name(raw: str) -> str:
    """A registry entry's name; whether one is registered is checked in ``resolve``."""
    return raw.strip().lower()


def _existing_file(raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ValueError("is not an existing file")
    return path.resolve()


def _olive_workflow(raw: str) -> Path:
    """An Olive workflow file (JSON or YAML) with a ModelBuilder pass, checked before a conversion and Olive's
    environment are spent on it."""
    path = _existing_file(raw)
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            workflow = yaml.safe_load(text)
        else:
            workflow = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError and YAMLError are ValueErrors
        raise ValueError(f"is not a readable Olive workflow ({type(exc).__name__}: {exc}); write it as JSON or YAML, "
                         "as `olive run --config` takes") from None
    passes = workflow.get("passes") if isinstance(workflow, dict) else None
    if not isinstance(passes, dict) or not any(isinstance(step, dict) and str(step.get("type", "")).lower()
                                               == "modelbuilder" for step in passes.values()):
        raise ValueError('has no ModelBuilder pass under "passes"; the harness builds onnxruntime-genai models, '
                         'so the workflow needs one ({"passes": {"builder": {"type": "ModelBuilder", ...}}})')
    return path


def _interpreter(raw: str) -> Path:
    """An existing Python executable, made absolute but not resolved: a virtual environment's ``bin/python``
    is a symlink to the base interpreter, and resolving it would leave the environment behind."""
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ValueError("is not an existing file (give the path of a Python interpreter, e.g. ENV/bin/python)")
    return Path(os.path.abspath(path))


def _path(raw: str) -> Path:
    return Path(raw).expanduser()


def _existing_path(raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.exists():
        raise ValueError("does not exist")
    return path


def _accuracy_level(raw: str) -> int:
    return int(_choice(ACCURACY_LEVEL_CHOICES)(raw))


def _precision_list(raw: str) -> tuple[str, ...]:
    if raw.strip().lower() == "all":
        return PRECISIONS
    names = [_choice(PRECISIONS)(part) for part in raw.split(",") if part.strip()]
    if not names:
        raise ValueError(f"names no precision; use one or more of {', '.join(PRECISIONS)}, or all")
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Setting:
    name: str
    flag: str
    help: str
    parse: Callable[[str], Any]
    default: Callable[[], Any]
    metavar: str = "VALUE"
    multiple: bool = False  # repeatable flag / list in files; the value is a tuple

    @property
    def env(self) -> str:
        return "HARNESS_" + self.name.upper()

    @property
    def ini(self) -> str:
        return "harness_" + self.name




SETTINGS: tuple[Setting, ...] = (
    Setting("model", "--model", "model to validate (write --model=PATH): Hugging Face folder, .gguf file, "
            "onnxruntime-genai folder, Foundry Local folder or peft adapter folder (merged into its base model) "
            "(default: embedded SmolLM2-135M-Instruct)", _path, lambda: None, "PATH"),
    Setting("base_model", "--base-model", "the base model a fine-tune was trained from (write --base-model=PATH): "
            "Hugging Face folder or .gguf file; an adapter given as --model is merged into it (default: the base "
            "its adapter_config.json names, when that is a path on this machine)", _existing_path, lambda: None,
            "PATH"),
    Setting("precision", "--precision", f"quantization precision: {', '.join(PRECISIONS)} (default int4); "
            "a comma-separated list (or 'all') also builds the others and writes a measured comparison "
            "table; the suites test the first", _precision_list, lambda: ("int4",), "NAME[,NAME...]"),
    Setting("builder", "--builder", "how to build the ONNX model: model-builder (onnxruntime-genai's own, the "
            "deployment engine's version; default) or olive (olive auto-opt --use_model_builder, as the deployment "
            "guide does, in a build environment of its own), or one a conftest adds (pytest_harness_builders)",
            _name, lambda: "model-builder", "NAME"),
    Setting("olive_python", "--olive-python", "run Olive with this Python interpreter (an environment you have "
            "with olive-ai installed) instead of the one the harness creates from its lock file",
            _interpreter, lambda: None, "PATH"),
    Setting("olive_config", "--olive-config", "run this Olive workflow file (with a ModelBuilder pass) "
            "instead of auto-opt", _olive_workflow, lambda: None, "FILE"),
    Setting("ep", "--ep", f"execution provider: {', '.join(EXECUTION_PROVIDERS)} (default cpu)",
            _choice(tuple(EXECUTION_PROVIDERS)), lambda: "cpu", "NAME"),
    Setting("accuracy_level", "--accuracy-level", "compute the quantized MatMulNBits nodes at this accuracy "
            "level: 4 (int8 activations, the builders' CPU default: fastest, but the kernel and so the greedy "
            "answers depend on the CPU) or 1 (fp32 compute: the same answers on every CPU, slower); derived "
            "from the built model without a rebuild (default: as built)", _accuracy_level, lambda: None, "LEVEL"),
    Setting("unstable", "--unstable", "what an unstable verdict (compute paths disagree: the verdict hangs on a "
            "near-tie) does: warn (default: reported as its own outcome) or fail", _choice(UNSTABLE_POLICIES),
            lambda: "warn", "NAME"),
    Setting("inference_config", "--inference-config", "use this inference_model.json for the Foundry "
            "Local folder (validated, not rewritten) instead of deriving one", _existing_file, lambda: None, "FILE"),
    Setting("injection_policy", "--injection-policy", "what a special-token injection finding does: "
            "warn (default) or fail", _choice(INJECTION_POLICIES), lambda: "warn", "NAME"),
    Setting("cases", "--cases", "case file (YAML or JSONL) or folder of them for the cases suite; repeatable "
            "(default: the general and example domain sets shipped in fixtures/cases)",
            _existing_path, lambda: (), "PATH", multiple=True),
    Setting("eval_texts", "--eval-texts", "your domain's texts for the parity suite, in place of the shipped ones: "
            ".txt files (one text each), .jsonl files (one {\"id\", \"text\"} per line) or folders of them; "
            "repeatable (default: the texts in fixtures/eval/texts)", _existing_path, lambda: (), "PATH",
            multiple=True),
    Setting("reference", "--reference", "Hugging Face folder or GGUF file of the reference model for the "
            "parity suite (default: the source model when it is one of those)", _existing_path,
            lambda: None, "PATH"),
    Setting("reference_precision", "--reference-precision", "the parity reference's precision: fp32 (exact), bf16 "
            "(half the memory; adds a KL of about 0.001 nats against fp32 on the default model) or auto (default: "
            "fp32 when the memory plan fits it, else bf16)", _choice(REFERENCE_PRECISIONS), lambda: "auto", "NAME"),
    Setting("profile", "--harness-profile", "sample counts: smoke (fast, for CI of this repo) or "
            "full (for gating a release; default), or one a conftest adds (pytest_harness_profiles)", _name,
            lambda: "full", "NAME"),
    Setting("budget", "--harness-budget", "a time budget for the run (e.g. 150s, 2.5m): the profile's sample "
            "counts are scaled to the model's measured speed, never below what their statistics need, and the "
            "run says what it cut (default: no budget)", parse_duration, lambda: None, "DURATION"),
    Setting("memory", "--harness-memory", "the memory this run may use (e.g. 8GiB, 7.5GB), for a runner of known "
            "size; the memory plan checks each phase's predicted peak against it (default: what this machine has "
            "available, within its control group's limit)", parse_size, lambda: None, "SIZE"),
    Setting("cache_dir", "--harness-cache-dir", "where converted and built models are cached "
            "(default: $XDG_CACHE_HOME/onnx-slm-harness or ~/.cache/onnx-slm-harness on Linux, "
            "LOCALAPPDATA\\onnx-slm-harness on Windows, ~/Library/Caches/onnx-slm-harness on macOS)", _path,
            default_cache_dir, "DIR"),
    Setting("baseline", "--harness-baseline", "compare this run's token and quality metrics with an earlier run: "
            "its folder, its results.json, or a folder of runs (the newest earlier one with the same model hash, "
            "precision, accuracy level, EP and machine); a regression beyond the noise fails the run, and an "
            "unreadable, empty or mistyped baseline stops it at start", _path, lambda: None, "PATH"),
    Setting("ab", "--harness-ab", "time this model against a baseline model in the same run: the baseline's built "
            "folder, its source (built like this one), or a run's results.json whose model is still in the cache; "
            "the benchmarks interleave the two, round by round, and a regression beyond the noise of the pairs "
            "fails the run (the way to gate a new fine-tune against the one in production)", _existing_path,
            lambda: None, "PATH"),
    Setting("inconclusive", "--inconclusive", "what an inconclusive comparison with the baseline (a timing whose "
            "interval straddles its threshold, too few rounds, a machine not equally busy, or nothing compared) "
            "does: warn (default: its own line and report section) or fail", _choice(UNSTABLE_POLICIES),
            lambda: "warn", "NAME"),
    Setting("reports_dir", "--harness-reports", "where run reports are written (default reports/ "
            "under the rootdir)", _path, lambda: None, "DIR"),
    Setting("shard", "--harness-shard", "run only shard I of N of the checks (e.g. 2/4), for a model too slow for "
            "one runner: N jobs run I = 1..N, and `harness merge` joins their reports into one verdict",
            parse_shard, lambda: None, "I/N"),
)
SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    model: Path | None
    base_model: Path | None  # --base-model: an adapter's base, or the model a fine-tune was trained from
    precisions: tuple[str, ...]  # the first is the one the suites test
    builder: str
    olive_python: Path | None
    olive_config: Path | None
    ep: str
    accuracy_level: int | None
    unstable: str
    inference_config: Path | None
    injection_policy: str
    cases: tuple[Path, ...]
    eval_texts: tuple[Path, ...]
    reference: Path | None
    reference_precision: str
    profile: str
    budget: float | None  # seconds
    memory: int | None  # bytes: --harness-memory
    cache_dir: Path
    reports_dir: Path
    baseline: Path | None
    ab: Path | None
    inconclusive: str
    shard: Shard | None
    origins: Mapping[str, str]  # setting name -> where its value came from, for the header
    model_config: Mapping[str, Any] = field(default_factory=dict)  # [tool.harness.model_config]
    gate_table: Mapping[str, Any] = field(default_factory=dict)  # [tool.harness.gates], resolved by harness.gates

    @property
    def model_given(self) -> bool:
        return self.model is not None

    @property
    def precision(self) -> str:
        return self.precisions[0]


@dataclass(frozen=True)
class RawValue:
    items: tuple[str, ...]  # one item unless the setting is ``multiple``
    origin: str
    base_dir: Path | None = None  # relative paths from a file are relative to that file


# HARNESS_* variables that are not settings: the seeded faults of harness.testing and the benchmarks' own.
OTHER_VARIABLES = ("HARNESS_SUITE_PROFILE", "HARNESS_SCALE_SPEEDS", "HARNESS_SPEC")
OTHER_PREFIXES = ("HARNESS_FAULT_",)
# How alike (difflib's ratio) an unknown HARNESS_* name must be to a setting's to be its misspelling:
# HARNESS_PRECISON 0.97, HARNESS_MODLE 0.92; other tools' variables stay below (Harness CI's HARNESS_BUILD_ID is
# 0.84 from HARNESS_BUILDER) and are left alone.
MISSPELLING = 0.88


def check_variable_names(env: Mapping[str, str]) -> None:
    """A misspelt HARNESS_* variable would be ignored, and the run would validate something else than meant."""
    known = [setting.env for setting in SETTINGS]
    for name in sorted(env):
        if not name.startswith("HARNESS_") or name in known or name in OTHER_VARIABLES or name.startswith(
                OTHER_PREFIXES):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=MISSPELLING)
        if close:
            raise ConfigError(f"environment variable {name} is not a harness setting; did you mean {close[0]}? "
                              "(rename it, or unset it)")


def read_pyproject_table(pyproject: Path | None) -> dict[str, Any]:
    """The ``[tool.harness]`` table of a pyproject.toml, or {} if there is none."""
    if pyproject is None or not pyproject.is_file():
        return {}
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{pyproject} is not readable TOML ({exc}); fix the file") from None
    tool = data.get("tool", {})
    table = tool.get("harness", {}) if isinstance(tool, dict) else None
    if not isinstance(table, dict):
        raise ConfigError(f"[tool.harness] in {pyproject} must be a table; fix the file")
    unknown = sorted(set(table) - set(SETTINGS_BY_NAME) - set(TABLES))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)} in [tool.harness] of {pyproject}; "
            f"known keys: {', '.join([*SETTINGS_BY_NAME, *TABLES])}"
        )
    for name in TABLES:
        if not isinstance(table.get(name, {}), dict):
            raise ConfigError(f"[tool.harness] {name} in {pyproject} must be a table "
                              f"([tool.harness.{name}])")
    return dict(table)


def resolve(
    cli: Mapping[str, Any],
    *,
    env: Mapping[str, str],
    rootdir: Path,
    pyproject: Path | None = None,
    ini: Mapping[str, Any] | None = None,
    ini_origin: str = "",
    registered: Mapping[str, Sequence[str]] = BUILTIN_NAMES,
) -> Settings:
    """Pick each setting from the first source that has it: CLI > env (``os.environ``, or a dict in a test) >
    [tool.harness] in ``pyproject`` > the pytest ini (``ini``, read from ``ini_origin``). Paths are relative to
    ``rootdir``; ``registered`` names the profiles and builders the plugins contribute."""
    check_variable_names(env)
    table = read_pyproject_table(pyproject)
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for setting in SETTINGS:
        raw = _first_raw(setting, cli, env, table, pyproject, ini or {}, ini_origin)
        if raw is None:
            values[setting.name] = setting.default()
            origins[setting.name] = "default"
            continue
        parsed = [_parse(setting, item, raw) for item in raw.items]
        if setting.name in REGISTERED and parsed[0] not in registered[setting.name]:
            raise ConfigError(f"{setting.flag} {raw.items[0]!r} (from {raw.origin}) is not one of "
                              f"{', '.join(registered[setting.name])}")
        values[setting.name] = tuple(parsed) if setting.multiple else parsed[0]
        origins[setting.name] = raw.origin
    if values["reports_dir"] is None:
        values["reports_dir"] = rootdir / "reports"
    if values["olive_config"] is not None and values["builder"] != "olive":
        raise ConfigError(
            "--olive-config runs an Olive workflow, so it cannot be combined with "
            f"--builder {values['builder']}; drop one of them"
        )
    if values["olive_python"] is not None and values["builder"] != "olive":
        raise ConfigError(f"--olive-python runs Olive builds, so it cannot be combined with --builder "
                          f"{values['builder']}; add --builder olive or drop --olive-python")
    values["precisions"] = values.pop("precision")
    return Settings(**values, origins=origins, model_config=dict(table.get("model_config", {})),
                         gate_table=dict(table.get("gates", {})))


def _parse(setting: Setting, text: str, raw: RawValue) -> Any:
    if not text.strip():  # an unset CI variable renders as "": it must not mean "the default"
        raise ConfigError(f"{setting.flag} is empty (from {raw.origin}); give it a value or leave it unset")
    relative = setting.metavar in PATH_METAVARS and not Path(text).expanduser().is_absolute()
    if relative:
        # Relative to the file that set it; made absolute without resolving symlinks (see _interpreter).
        text = os.path.abspath((raw.base_dir or Path.cwd()) / text)
    try:
        return setting.parse(text)
    except ValueError as exc:
        raise ConfigError(f"{setting.flag} {text!r} (from {raw.origin}) {exc}") from exc


def _items(value: Any, setting: Setting, origin: str, split: str | None = None) -> tuple[str, ...]:
    """A setting's raw text(s): lists stay lists, a multiple setting's string is split. A list for a setting of one
    value is its comma-separated form where it has one (``precision = ["fp32", "int4"]``), else refused."""
    if isinstance(value, list | tuple):
        if not value:
            raise ConfigError(f"{setting.flag} is an empty list (from {origin}); give it a value or leave it unset")
        if not setting.multiple:
            if "," not in setting.metavar:
                raise ConfigError(f"{setting.flag} takes one value, not a list (from {origin}): {value!r}")
            return (",".join(str(v) for v in value),)
        return tuple(str(v) for v in value)
    if isinstance(value, dict | bool):
        raise ConfigError(f"{setting.flag} = {value!r} (from {origin}) must be a string")
    if setting.multiple:  # nothing but separators is an empty value, which _parse refuses
        return tuple(part for part in str(value).split(split) if part.strip()) or ("",)
    return (str(value),)


def _first_raw(
    setting: Setting,
    cli: Mapping[str, Any],
    env: Mapping[str, str],
    table: Mapping[str, Any],
    pyproject: Path | None,
    ini: Mapping[str, Any],
    ini_origin: str,
) -> RawValue | None:
    if cli.get(setting.name) is not None:
        origin = "the command line"
        return RawValue(_items(cli[setting.name], setting, origin), origin)
    if setting.env in env:
        origin = f"environment variable {setting.env}"
        return RawValue(_items(env[setting.env], setting, origin, os.pathsep), origin)
    if setting.name in table:
        assert pyproject is not None
        origin = f"[tool.harness] in {pyproject}"
        return RawValue(_items(table[setting.name], setting, origin), origin, pyproject.parent)
    if ini.get(setting.name):
        origin = f"{setting.ini} in {ini_origin}"
        return RawValue(_items(ini[setting.name], setting, origin), origin)
    return None


def check_execution_provider(ep: str, available: list[str]) -> None:
    """Fail clearly when the chosen execution provider is not in this onnxruntime build."""
    provider = EXECUTION_PROVIDERS[ep]
    if provider not in available:
        raise ConfigError(
            f"--ep {ep} needs {provider}, which this onnxruntime build does not offer "
            f"(available: {', '.join(available)}); use --ep cpu or install the onnxruntime "
            "package built for that provider"
        )
