"""Turn a Hugging Face folder into an onnxruntime-genai model: Olive or the model builder.

Each builder runs as a child process whose full output goes to a log file. Olive exits 0 even
when it pruned its only pass and produced nothing, so success is judged by the output folder, and
a failure is explained from the log (``diagnose``) in one line with the option that avoids it.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.config.settings import EXECUTION_PROVIDERS
from harness.errors import BuildError
from harness.preparation.buildlog import Progress, fail, run_logged
from harness.preparation.olive_env import OliveEnvironment, environment_variables
from harness.preparation.optional import MODEL_BUILDER_MODULES, require
from harness.preparation.probe import check_generates
from harness.preparation.source_views import ADAPTATIONS_VERSION, adaptations, read_config, write_view
from harness.provenance import package_version


class Builder(Protocol):
    name: str

    def options(self) -> dict[str, str]:
        """Everything besides the source and precision that changes the output (for the cache key)."""
        ...

    def describe(self) -> str:
        """Which builder, of which version, in which environment (for the header and provenance)."""
        ...

    def build(self, hf_folder: Path, out: Path, precision: str, ep: str, work: Path, log: Path,
              progress: Progress) -> None:
        """Write a complete onnxruntime-genai model folder into ``out`` or raise BuildError."""
        ...


def adopt_output(produced: Path, out: Path) -> bool:
    """Move a builder's output into ``out``; Olive <= 0.9 nested it under ``model/``."""
    for candidate in (produced, produced / "model"):
        if (candidate / "genai_config.json").is_file():
            for item in candidate.iterdir():
                shutil.move(str(item), out / item.name)
            return True
    return False


@dataclass
class OliveBuilder:
    """Olive in its own environment: ``olive auto-opt --use_model_builder``, the deployment guide's one
    command, or ``olive run --config`` with the user's workflow. Not ``olive optimize``: its int4 recipe adds
    a GPTQ pass that loads a calibration set from the Hugging Face hub, so it cannot build offline."""

    environment: OliveEnvironment
    workflow: Path | None = None
    name: str = field(default="olive", init=False)

    def options(self) -> dict[str, str]:
        options = {"environment": self.environment.key, "source_adaptations": ADAPTATIONS_VERSION}
        if self.workflow is None:
            return {**options, "command": "auto-opt --use_model_builder"}
        return {**options, "command": "run",
                "workflow_sha256": hashlib.sha256(self.workflow.read_bytes()).hexdigest()}

    def describe(self) -> str:
        return self.environment.describe()

    def build(self, hf_folder: Path, out: Path, precision: str, ep: str, work: Path, log: Path,
              progress: Progress) -> None:
        produced = work / "olive-output"
        hf_folder = buildable_folder(hf_folder, None, work, progress)[0]  # auto-opt takes no builder options
        # Olive logs why it pruned a pass only at INFO level (1); its default is ERROR. It runs in ``work``,
        # so its .olive-cache goes away with the build.
        olive = [str(self.environment.interpreter(log, progress)), "-m", "olive"]
        if self.workflow is None:
            device = "cpu" if ep == "cpu" else "gpu"
            cmd = [*olive, "auto-opt", "--model_name_or_path", str(hf_folder), "--device", device,
                   "--provider", EXECUTION_PROVIDERS[ep], "--use_model_builder",
                   "--precision", precision, "--output_path", str(produced), "--log_level", "1"]
            label = f"olive auto-opt {precision}"
        else:
            cmd = [*olive, "run", "--config", str(self.workflow), "--model_name_or_path",
                   str(hf_folder), "--output_path", str(produced), "--log_level", "1"]
            label = f"olive run {self.workflow.name}"
        code = run_logged(cmd, log, cwd=work, label=label, progress=progress, env=environment_variables())
        if code != 0 or not adopt_output(produced, out):
            raise fail(label, log, code)
        check_runs(self.name, out, precision, ep, log)


@dataclass
class ModelBuilderBuilder:
    """``python -m onnxruntime_genai.models.builder`` of the harness's own onnxruntime-genai (the deployment
    engine's version); ``extra_options`` are passed through."""

    extra_options: tuple[str, ...] = ()
    name: str = field(default="model-builder", init=False)

    def options(self) -> dict[str, str]:
        return {"extra_options": " ".join(self.extra_options),
                "builder_version": package_version("onnxruntime-genai"), "source_adaptations": ADAPTATIONS_VERSION}

    def describe(self) -> str:
        return f"onnxruntime-genai {package_version('onnxruntime-genai')} model builder in the harness's environment"

    def build(self, hf_folder: Path, out: Path, precision: str, ep: str, work: Path, log: Path,
              progress: Progress) -> None:
        require(f"building {hf_folder} with the onnxruntime-genai model builder", MODEL_BUILDER_MODULES)
        produced = work / "builder-output"
        model_folder, extra_options = buildable_folder(hf_folder, self.extra_options, work, progress)
        cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-m", str(model_folder),
               "-o", str(produced), "-p", precision, "-e", ep, "-c", str(work / "builder-cache")]
        if extra_options:
            cmd += ["--extra_options", *extra_options]
        label = f"model builder {precision}"
        code = run_logged(cmd, log, cwd=work, label=label, progress=progress)
        if code != 0 or not adopt_output(produced, out):
            raise fail(label, log, code)
        _copy_tokenizer_extras(hf_folder, out)
        check_runs(self.name, out, precision, ep, log)


def buildable_folder(hf_folder: Path, user_options: tuple[str, ...] | None, work: Path,
                     progress: Progress) -> tuple[Path, tuple[str, ...]]:
    """The folder to hand the builder (a config view of ``hf_folder`` where one is needed) and its extra options
    (the user's, plus what the source needs; see ``source_views``; None: a builder that takes no options). The
    built folder still gets the user's config.json (``_copy_tokenizer_extras`` reads the original)."""
    needs = adaptations(read_config(hf_folder), user_options or (), with_options=user_options is not None)
    for what in needs.describe():
        progress(f"building with {what}")
    folder = hf_folder if needs.config_view is None else write_view(hf_folder, needs.config_view,
                                                                   work / "config-view")
    return folder, (*(user_options or ()), *needs.extra_options)


def runtime_reason(message: str) -> str:
    """onnxruntime's error without its source location and advice: 'Non-zero status ... Status Message: <why>'."""
    reason = message.split("Status Message:", 1)[-1]
    reason = reason.split("] : ")[-1] if "[ONNXRuntimeError]" in reason else reason
    reason = re.sub(r"^\d+ : [A-Z_]+ : ", "", reason.strip())  # onnxruntime's status code and name
    return " ".join(reason.split(". Validate usage")[0].split())[:300]


def unsupported_hint(precision: str, ep: str) -> str:
    if precision == "fp16" and ep == "cpu":
        return ("fp16 is not supported on CPU (the onnxruntime-genai builder leaves it out of its CPU combinations); "
                "use --precision int4, int8 or fp32")
    return "try another --precision or --builder, and see the build log"


def check_runs(builder: str, out: Path, precision: str, ep: str, log: Path) -> None:
    """A built model must load and generate, or the build failed: fp16 on CPU builds but does not run."""
    problem = check_generates(out, ep, log)
    if problem is not None:
        raise BuildError(f"the {precision} model that {builder} built does not run on {ep}: "
                         f"{runtime_reason(problem)}; {unsupported_hint(precision, ep)}", log)


def _copy_tokenizer_extras(hf_folder: Path, out: Path) -> None:
    """The model builder leaves out chat_template.jinja, which templates are derived from."""
    for name in ("chat_template.jinja", "generation_config.json", "config.json"):
        if (hf_folder / name).is_file() and not (out / name).exists():
            shutil.copy2(hf_folder / name, out / name)
