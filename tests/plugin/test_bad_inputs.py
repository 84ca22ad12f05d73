"""Fail closed: every kind of bad input stops the run at start with one line that names it, the right exit code,
and no traceback (issue 22's corpus).

Each row writes its input into a fresh folder and returns the pytest arguments (and environment) that pass it;
the run uses the fake builder and runtime (``tests.plugin.test_plugin``), so a row costs a fraction of a second.
The command-line tool's bad inputs are in ``tests/unit/test_cli_errors.py`` and its baselines in
``tests/unit/test_baseline_validation.py``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.report.runs import FORMAT
from harness.testing.adapters import write_adapter_folder
from harness.testing.fakes import write_genai_folder, write_hf_folder
from harness.testing.links import dangling_symlink
from tests.plugin.test_plugin import env

__all__ = ["env"]  # the fixture, imported for pytest

USAGE = int(pytest.ExitCode.USAGE_ERROR)
Make = Callable[[Path], list[str]]  # writes the bad input under the folder given; returns the pytest arguments


@dataclass(frozen=True)
class BadInput:
    name: str
    line: str  # what the one line must contain (fnmatch pattern, after "ERROR: harness: ")
    make: Make
    env: dict[str, str] = field(default_factory=dict)
    exit: int = USAGE


CORPUS: list[BadInput] = []


def bad(name: str, line: str, **kwargs: object) -> Callable[[Make], Make]:
    def register(make: Make) -> Make:
        CORPUS.append(BadInput(name, line, make, **kwargs))  # type: ignore[arg-type]
        return make

    return register


def put(path: Path, content: str | bytes = "") -> Path:
    """Write ``content`` at ``path``; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def folder(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def without(path: Path) -> Path:
    """Delete ``path``; returns its folder."""
    path.unlink()
    return path.parent


def genai(tmp: Path, edit: Callable[[dict[str, object]], None] | None = None) -> Path:
    """A prebuilt onnxruntime-genai folder, its genai_config.json edited."""
    folder = write_genai_folder(tmp / "genai")
    if edit is not None:
        config = json.loads((folder / "genai_config.json").read_text(encoding="utf-8"))
        edit(config)
        (folder / "genai_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def pyproject(tmp: Path, body: str) -> list[str]:
    (tmp / "pyproject.toml").write_text(f"[tool.harness]\n{body}\n", encoding="utf-8")
    return []


def cases(tmp: Path, text: str, name: str = "cases.yaml") -> list[str]:
    (tmp / name).write_text(text, encoding="utf-8")
    return [f"--cases={tmp / name}"]


def case(assertion: str) -> str:
    return f"cases:\n  - id: one\n    prompt: hi\n    assert: [{assertion}]\n"


def baseline(tmp: Path, document: object) -> list[str]:
    path = tmp / "old" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(document) if not isinstance(document, str) else document, encoding="utf-8")
    return [f"--harness-baseline={path}"]


RUN = {"format": FORMAT, "schema_version": 2, "run": {"id": "r", "started": "s"},
       "key": {"precision": "int4"}, "tests": []}

# --- the model source -------------------------------------------------------------------------------------------
bad("model-missing", "--model */missing: no such file or folder; accepted: *")(lambda t: [f"--model={t / 'missing'}"])
bad("model-empty-folder", "--model */empty: the folder is empty*")(
    lambda t: [f"--model={folder(t / 'empty')}"])
bad("model-empty-value", "--model is empty (from the command line)*")(lambda t: ["--model="])
bad("model-empty-variable", "--model is empty (from environment variable HARNESS_MODEL)*",
    env={"HARNESS_MODEL": ""})(lambda t: [])
bad("genai-config-not-json", "*genai_config.json is not valid JSON*")(
    lambda t: ["--model=" + str(put(genai(t) / "genai_config.json", '{"model": ').parent)])
bad("genai-config-a-folder", "*genai_config.json cannot be read*")(
    lambda t: _replace_with_folder(genai(t) / "genai_config.json"))
bad("genai-config-no-decoder", "*genai_config.json has no model.decoder.filename*")(
    lambda t: [f"--model={genai(t, lambda c: c.update(model={}))}"])
bad("genai-config-missing-onnx", "*genai_config.json names missing.onnx, which is not in the folder*")(
    lambda t: [f"--model={genai(t, lambda c: c['model']['decoder'].update(filename='missing.onnx'))}"])  # type: ignore[index]
bad("genai-config-search-a-list", "*genai_config.json: search is a list*")(
    lambda t: [f"--model={genai(t, lambda c: c.update(search=[1, 2, 3]))}"])
bad("genai-config-context-a-string", "*genai_config.json: model.context_length is a str*")(
    lambda t: [f"--model={genai(t, lambda c: c['model'].update(context_length='big'))}"])  # type: ignore[index]
bad("onnx-junk", "*model.onnx is not an ONNX model*")(
    lambda t: ["--model=" + str(put(genai(t) / "model.onnx", b"\xff\xfe junk \x00" * 50).parent)])
bad("tokenizer-config-not-json", "*tokenizer_config.json is not valid JSON*")(
    lambda t: _tokenizer_config(t, "{not json"))
bad("chat-template-raises", "*the chat template fails to render: ZeroDivisionError: division by zero; fix*")(
    lambda t: _template(t, "{{ 1/0 }}"))
bad("chat-template-syntax", "*chat template*")(lambda t: _template(t, "{% if %}"))
bad("gguf-no-magic", "*a .gguf file without the GGUF header*")(
    lambda t: ["--model=" + str(put(t / "m.gguf", b"NOPE" + bytes(64)))])
bad("gguf-truncated", "*m.gguf: its GGUF header cannot be read (*); the file is truncated or corrupt")(
    lambda t: ["--model=" + str(put(t / "m.gguf", b"GGUF\x03\x00\x00\x00\x05"))])
bad("hf-config-not-json", "*config.json is not valid JSON*")(
    lambda t: ["--model=" + str(put(write_hf_folder(t / "hf2") / "config.json", "{").parent)])
bad("hf-no-weights", "*Hugging Face folder without weights*")(
    lambda t: [f"--model={without(write_hf_folder(t / 'hf2') / 'model.safetensors')}"])
bad("reference-missing", "--reference * does not exist")(lambda t: [f"--reference={t / 'nope'}"])
bad("reference-not-buildable", "--reference * is a onnx-genai model; the reference must be*")(
    lambda t: [f"--reference={genai(t)}"])
bad("ab-missing", "--harness-ab * does not exist")(lambda t: [f"--harness-ab={t / 'nope'}"])

# --- a peft adapter and its base model ---------------------------------------------------------------------------
bad("adapter-without-base", "--model */a: a peft adapter whose adapter_config.json names no base model "
    "(base_model_name_or_path is empty); pass the model it was fine-tuned from with --base-model=PATH*")(
    lambda t: _adapter(t, None))
bad("adapter-base-on-the-hub", "--model */a: the adapter's base model is 'HuggingFaceTB/SmolLM2-135M-Instruct' on the "
    "Hugging Face hub (*), and the harness reads local files only; download it, then pass * with --base-model=PATH*")(
    lambda t: _adapter(t, "HuggingFaceTB/SmolLM2-135M-Instruct"))
bad("adapter-base-not-here", "--model */a: the adapter's base model */gone (base_model_name_or_path in "
    "adapter_config.json) is not on this machine; pass * with --base-model=PATH*")(
    lambda t: _adapter(t, str(t / "gone")))
bad("adapter-base-not-a-model", "--model */a: its base model */notes: found notes.txt but no config.json*")(
    lambda t: _adapter(t, str(put(t / "notes" / "notes.txt").parent)))
bad("base-model-missing", "--base-model * does not exist")(lambda t: [f"--base-model={t / 'nope'}"])
bad("base-model-not-a-model", "--base-model */notes: found notes.txt but no config.json or genai_config.json*")(
    lambda t: [f"--base-model={put(t / 'notes' / 'notes.txt').parent}"])
bad("base-model-an-adapter", "--base-model */a is a peft adapter; pass the model it was fine-tuned from*")(
    lambda t: [f"--base-model={write_adapter_folder(t / 'a')}"])
bad("base-model-prebuilt-for-an-adapter", "--base-model */genai is a onnx-genai model; pass the model you "
    "fine-tuned from as a Hugging Face folder or a GGUF file*")(
    lambda t: [*_adapter(t, None), f"--base-model={genai(t)}"])
bad("base-model-prebuilt", "--base-model */genai is a onnx-genai model; pass the model you fine-tuned from*")(
    lambda t: [f"--base-model={genai(t)}"])
bad("adapter-config-not-json", "--model */a: adapter_config.json is not valid JSON (*); fix the file*")(
    lambda t: _adapter(t, None, "{"))
bad("adapter-config-a-list", "--model */a: adapter_config.json holds a list, not an object*")(
    lambda t: _adapter(t, None, "[]"))
bad("adapter-config-no-peft-type", "--model */a: adapter_config.json has no peft_type*")(
    lambda t: _adapter(t, None, '{"r": 8}'))
bad("adapter-prompt-tuning", "--model */a: adapter_config.json: peft_type PROMPT_TUNING cannot be merged into the base "
    "model (a prompt-learning method*")(lambda t: _adapter(t, None, '{"peft_type": "PROMPT_TUNING"}'))
bad("adapter-not-causal-lm", "--model */a: adapter_config.json: task_type SEQ_CLS is not CAUSAL_LM*")(
    lambda t: _adapter(t, None, '{"peft_type": "LORA", "task_type": "SEQ_CLS"}'))
bad("adapter-without-weights", "--model */a: a peft adapter folder without adapter_model.safetensors*")(
    lambda t: [f"--model={without(write_adapter_folder(t / 'a') / 'adapter_model.safetensors')}"])
bad("adapter-beside-a-model", "--model */a: the folder holds a model (config.json, model.safetensors) and a peft "
    "adapter (adapter_config.json); keep one of them*")(
    lambda t: [f"--model={write_adapter_folder(write_hf_folder(t / 'a'))}"])
bad("adapter-of-another-model", "--model */a: the adapter's model.layers.0.self_attn.q_proj maps 896 to 896 features, "
    "and no weight of the base model has a dimension of 896; an adapter merges into the model it was fine-tuned "
    "from, and */hf2 is not it*")(
    lambda t: [f"--model={write_adapter_folder(t / 'a', modules={'model.layers.0.self_attn.q_proj': (896, 896)})}",
               f"--base-model={write_hf_folder(t / 'hf2')}"])

# --- settings ----------------------------------------------------------------------------------------------------
bad("precision-unknown", "--precision 'int3' (from the command line) is not one of*")(lambda t: ["--precision=int3"])
bad("precision-empty-list", "--precision is an empty list (from [[]tool.harness[]]*")(
    lambda t: pyproject(t, "precision = []"))
bad("precision-a-boolean", "--precision = True (from [[]tool.harness[]]*) must be a string")(
    lambda t: pyproject(t, "precision = true"))
bad("reference-a-list", "--reference takes one value, not a list*")(lambda t: pyproject(t, 'reference = ["a", "b"]'))
bad("pyproject-unknown-key", "unknown key(s) precison in [[]tool.harness[]]*")(
    lambda t: pyproject(t, 'precison = "int8"'))
bad("gates-not-a-table", "[[]tool.harness[]] gates in * must be a table*")(lambda t: pyproject(t, "gates = 3"))
bad("variable-misspelt", "environment variable HARNESS_PRECISON is not a harness setting; did you mean "
    "HARNESS_PRECISION?*", env={"HARNESS_PRECISON": "int8"})(lambda t: [])
bad("variable-misspelt-model", "environment variable HARNESS_MODLE is not a harness setting; did you mean "
    "HARNESS_MODEL?*", env={"HARNESS_MODLE": "x"})(lambda t: [])
bad("cache-dir-variable-empty", "--harness-cache-dir is empty (from environment variable HARNESS_CACHE_DIR)*",
    env={"HARNESS_CACHE_DIR": ""})(lambda t: [])
bad("budget-unreadable", "--harness-budget 'soon' (from the command line)*")(lambda t: ["--harness-budget=soon"])
bad("memory-unreadable", "--harness-memory 'lots' (from the command line)*")(lambda t: ["--harness-memory=lots"])
bad("ep-unavailable", "--ep cuda needs CUDAExecutionProvider*")(lambda t: ["--ep=cuda"])
bad("ep-unknown", "--ep 'tpu' (from the command line) is not one of*")(lambda t: ["--ep=tpu"])
bad("builder-unknown", "--builder 'nope' (from the command line) is not one of*")(lambda t: ["--builder=nope"])
bad("profile-unknown", "--harness-profile 'quick' (from the command line) is not one of*")(
    lambda t: ["--harness-profile=quick"])
bad("accuracy-level-unknown", "--accuracy-level '9' (from the command line) is not one of*")(
    lambda t: ["--accuracy-level=9"])
bad("olive-python-missing", "--olive-python * is not an existing file*")(
    lambda t: ["--builder=olive", f"--olive-python={t / 'python'}"])
bad("olive-config-garbage", "--olive-config * is not a readable Olive workflow*")(
    lambda t: ["--builder=olive", "--olive-config=" + str(put(t / "w.json", "{{{"))])
bad("olive-config-no-model-builder", "--olive-config * has no ModelBuilder pass*")(
    lambda t: ["--builder=olive", "--olive-config=" + str(put(t / "w.json", '{"passes": {"q": {"type": "Quant"}}}'))])
bad("olive-config-with-model-builder", "--olive-config runs an Olive workflow, so it cannot be combined*")(
    lambda t: ["--olive-config=" + str(put(t / "w.json", '{"passes": {"b": {"type": "ModelBuilder"}}}'))])
bad("gate-above-its-range", "gate quality_token_f1_min = '5' (from the command line) is outside [[]0, 1[]]*")(
    lambda t: ["--gate=quality_token_f1_min=5"])
bad("gate-below-its-range", "gate parity_top1_agreement_min = '-2' (from the command line) is outside*")(
    lambda t: ["--gate=parity_top1_agreement_min=-2"])
bad("gate-negative-timeout", "gate robustness_timeout_s = '-1' (from the command line) is outside (0, inf)*")(
    lambda t: ["--gate=robustness_timeout_s=-1"])
bad("gate-not-a-number", "gate quality_rouge_l_min = 'high' (from the command line) is not a finite number")(
    lambda t: ["--gate=quality_rouge_l_min=high"])
bad("gate-unknown", "unknown gate 'ppl_max' (from the command line)*")(lambda t: ["--gate=ppl_max=2"])
bad("gate-no-value", "gate 'ppl_max' (from the command line) must be NAME=VALUE*")(lambda t: ["--gate=ppl_max"])
bad("inference-config-missing", "--inference-config * is not an existing file")(
    lambda t: [f"--inference-config={t / 'nope.json'}"])
bad("inference-config-not-json", "--inference-config*is not valid JSON*")(
    lambda t: ["--inference-config=" + str(put(t / "i.json", "{"))])
bad("inference-config-wrong-schema", "--inference-config * does not follow the inference_model.json schema: *")(
    lambda t: ["--inference-config=" + str(put(t / "i.json", '{"Name": "m", "PromptTemplate": "x"}'))])

bad("eval-texts-missing", "--eval-texts * does not exist")(lambda t: [f"--eval-texts={t / 'nope'}"])
bad("eval-texts-bad-line", "--eval-texts *t.jsonl:1: not valid JSON*")(
    lambda t: ["--eval-texts=" + str(put(t / "t.jsonl", "{nope\n"))])

# --- the folders the run writes --------------------------------------------------------------------------------
bad("reports-a-file", "--harness-reports * is a file, not a folder*")(
    lambda t: [f"--harness-reports={put(t / 'r')}"])
bad("reports-dangling-symlink", "--harness-reports * is a symlink to *, which does not exist*")(
    lambda t: [f"--harness-reports={dangling_symlink(t / 'r')}"])
bad("reports-under-a-file", "--harness-reports * cannot be written*")(
    lambda t: [f"--harness-reports={put(t / 'f') / 'r'}"])
bad("cache-a-file", "--harness-cache-dir * is a file, not a folder*")(
    lambda t: [f"--harness-cache-dir={put(t / 'c')}"])
bad("cache-dangling-symlink", "--harness-cache-dir * is a symlink to *, which does not exist*")(
    lambda t: [f"--harness-cache-dir={dangling_symlink(t / 'c')}"])

# --- case files ---------------------------------------------------------------------------------------------------
bad("cases-missing", "--cases * does not exist")(lambda t: [f"--cases={t / 'nope.yaml'}"])
bad("cases-not-yaml", "*cases.yaml:2: not valid YAML*")(lambda t: cases(t, "cases: [\n"))
bad("cases-empty", "*cases.yaml is empty*")(lambda t: cases(t, ""))
bad("cases-jsonl-bad-line", "*cases.jsonl:1: not valid JSON*")(lambda t: cases(t, "{nope\n", "cases.jsonl"))
bad("cases-unknown-field", "*cases.yaml:*promt*")(lambda t: cases(t, "cases:\n  - id: one\n    promt: hi\n"))
bad("cases-regex-invalid", "*is not a valid regular expression*")(
    lambda t: cases(t, case("{type: regex, value: '(a'}")))
bad("cases-schema-file-missing", "*schema file * does not exist*")(
    lambda t: cases(t, case("{type: json-schema, value: nope.json}")))
bad("cases-schema-file-not-json", "*schema file * is not valid JSON*")(
    lambda t: cases(t, case("{type: json-schema, value: " + put(t / "s.json", "{").name + "}")))
bad("cases-schema-invalid", "*is not a valid JSON schema*")(
    lambda t: cases(t, case("{type: json-schema, value: {type: 12}}")))
bad("cases-schema-exponential", "*expands to over 10,000 subschemas*")(lambda t: _exponential_schema(t))
bad("cases-duplicate-id", "*case id 'one' is already used at*")(
    lambda t: cases(t, case("{type: stops-cleanly}") + "  - id: one\n    prompt: hi\n    assert: [{type: is-json}]\n"))
bad("cases-check-nothing", "*case 'one' checks nothing*")(lambda t: cases(t, "cases:\n  - id: one\n    prompt: hi\n"))
bad("cases-bad-option", "*case 'one', field options.temperature: -1 is less than or equal to the minimum of 0*")(
    lambda t: cases(t, case("{type: stops-cleanly}") + "    options: {do_sample: true, temperature: -1}\n"))

# --- baselines ------------------------------------------------------------------------------------------------------
bad("baseline-missing", "--harness-baseline (from the command line): * no such file or folder*")(
    lambda t: [f"--harness-baseline={t / 'nope'}"])
bad("baseline-empty-file", "--harness-baseline*is not readable JSON*")(lambda t: baseline(t, ""))
bad("baseline-wrong-format", "--harness-baseline*is not a harness results file*")(lambda t: baseline(t, {"a": 1}))
bad("baseline-key-a-list", "--harness-baseline*key*")(lambda t: baseline(t, {**RUN, "key": ["int4"]}))
bad("baseline-run-a-string", "--harness-baseline*run*")(lambda t: baseline(t, {**RUN, "run": "yesterday"}))
bad("baseline-test-without-id", "--harness-baseline*tests*")(lambda t: baseline(t, {**RUN, "tests": [{}]}))


def _adapter(tmp: Path, base: str | None, config: str | None = None) -> list[str]:
    """A peft adapter folder whose config names ``base`` (its text replaced by ``config``)."""
    folder = write_adapter_folder(tmp / "a", base=base)
    if config is not None:
        (folder / "adapter_config.json").write_text(config, encoding="utf-8")
    return [f"--model={folder}"]


def _replace_with_folder(path: Path) -> list[str]:
    path.unlink()
    path.mkdir()
    return [f"--model={path.parent}"]


def _tokenizer_config(tmp: Path, text: str) -> list[str]:
    folder = genai(tmp)
    (folder / "chat_template.jinja").unlink()
    (folder / "tokenizer_config.json").write_text(text, encoding="utf-8")
    return [f"--model={folder}"]


def _template(tmp: Path, template: str) -> list[str]:
    folder = genai(tmp)
    (folder / "chat_template.jinja").write_text(template, encoding="utf-8")
    return [f"--model={folder}"]


def _exponential_schema(tmp: Path) -> list[str]:
    """1.4 KB of ``allOf`` aliases, each doubling the last: 2**20 subschemas once expanded."""
    defs = {f"a{i}": {"allOf": [{"$ref": f"#/$defs/a{i + 1}"}] * 2} for i in range(20)}
    (tmp / "s.json").write_text(
        json.dumps({"$defs": {**defs, "a20": {"type": "string"}}, "$ref": "#/$defs/a0"}), encoding="utf-8"
    )
    return cases(tmp, case("{type: json-schema, value: s.json}"))


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 60, len(CORPUS)
    assert len({row.name for row in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("row", CORPUS, ids=[row.name for row in CORPUS])
def test_bad_input_is_one_line_at_start(pytester: pytest.Pytester, env: dict[str, Path],
                                        monkeypatch: pytest.MonkeyPatch, row: BadInput) -> None:
    for name, value in row.env.items():
        monkeypatch.setenv(name, value)
    folder = pytester.path / "input"
    folder.mkdir()
    args = row.make(folder)
    model = [] if any(a.startswith("--model=") for a in args) or "HARNESS_MODEL" in row.env else [
        f"--model={env['model']}"]
    cache = [] if any(a.startswith("--harness-cache-dir=") for a in args) or "HARNESS_CACHE_DIR" in row.env else [
        f"--harness-cache-dir={env['cache']}"]
    if (folder / "pyproject.toml").exists():
        shutil.move(folder / "pyproject.toml", pytester.path / "pyproject.toml")
    result = pytester.runpytest(*model, *cache, *args, str(env["suite"]))
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output and "INTERNALERROR" not in output, output
    lines = [line for line in result.stderr.lines if line.strip()]
    assert len(lines) == 1, output
    result.stderr.fnmatch_lines([f"ERROR: harness: {row.line}"])
    assert result.ret == row.exit
    assert not any((env["cache"] / "onnx").glob("*")), "nothing is built for a run that stops at start"


def test_an_error_every_check_would_repeat_is_written_out_once(pytester: pytest.Pytester,
                                                               env: dict[str, Path]) -> None:
    pytester.makepyfile(test_reference="""
import pytest
from harness.errors import HarnessError

@pytest.fixture(scope="session")
def reference():
    raise HarnessError("--reference /r: cannot load it; pass a Hugging Face folder")

@pytest.mark.parametrize("text", ["a", "b", "c"])
def test_parity(reference, text):
    pass
""")
    result = pytester.runpytest(f"--model={env['model']}", f"--harness-cache-dir={env['cache']}", "test_reference.py")
    result.assert_outcomes(errors=3)
    output = result.stdout.str()
    assert output.count("cannot load it") == 2  # the first error, and the short summary's line for it
    assert output.count("harness: the same error as test_reference.py::test_parity[a] (above)") == 4  # b, c: twice


def test_a_damaged_cache_entry_is_named_with_how_to_drop_it(pytester: pytest.Pytester, env: dict[str, Path]) -> None:
    args = (f"--model={env['model']}", f"--harness-cache-dir={env['cache']}", str(env["suite"]))
    assert pytester.runpytest(*args).ret == pytest.ExitCode.OK  # built into the cache
    (entry,) = (env["cache"] / "onnx").iterdir()
    put(entry / "model.onnx", b"\xff\xfe junk \x00" * 50)
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "Traceback" not in result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines([f"ERROR: harness: the cached build {entry} is damaged: *model.onnx is not an ONNX "
                                 "model (DecodeError*); delete that folder and rerun to rebuild it"])
