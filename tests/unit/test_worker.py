"""The model worker and its client, on the fake runtime (no model): protocol, classification, restarts."""

from __future__ import annotations

import io
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import system
from harness.builtins import builtin_gates
from harness.config.gates import declare, resolve_gates
from harness.robustness.catalog import KNOWN_GOOD
from harness.robustness.prober import Prober
from harness.runtime.genai import read_model_info
from harness.testing.fakes import FakeRuntime, write_genai_folder
from harness.worker.child import fill_text, handle, past_context_text, serve
from harness.worker.client import WorkerClient, death
from harness.worker.protocol import WorkerError, encode_line

FAKE = "harness.testing.worker_fakes:fake_runtime"
HELLO = {"prompt": {"text": "hello"}, "options": {"max_new_tokens": 4}}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_genai_folder(tmp_path / "model")


@pytest.fixture
def client(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerClient]:
    monkeypatch.setenv("HARNESS_FAULT_SEGFAULT", "SEGV-ME")
    monkeypatch.setenv("HARNESS_FAULT_ABORT", "ABORT-ME")
    monkeypatch.setenv("HARNESS_FAULT_HANG", "HANG-ME")
    with WorkerClient.for_model(folder, runtime=FAKE) as started:
        yield started


def test_lone_surrogates_cross_the_pipe_unchanged() -> None:
    text = "a\ud800b\udcff" + b"\xff".decode("utf-8", "surrogateescape")
    line = encode_line({"text": text})
    assert line.isascii()
    assert json.loads(line)["text"] == text


def test_handle_answers_and_rejects_in_process(folder: Path) -> None:
    runtime = FakeRuntime(folder)
    answered = handle(runtime, HELLO)
    assert answered["kind"] == "answered" and len(answered["token_ids"]) == 4
    assert answered["prompt_text"] == runtime.decode(runtime.encode("hello"))
    rejected = handle(runtime, {"prompt": {"text": "hello"}, "options": {"temperature": -1.0}})
    assert rejected["kind"] == "rejected" and rejected["error"] == "InvalidSearchOption"
    assert rejected["classes"][:3] == ["InvalidSearchOption", "RuntimeFailure", "HarnessError"]
    no_prompt = handle(runtime, {"options": {}})
    assert no_prompt["error"] == "WorkerError" and "has no prompt" in no_prompt["message"]
    no_raw = handle(runtime, {"prompt": {"text": "hi"}, "raw": {"top_k": 1}})
    assert no_raw["error"] == "WorkerError" and "no raw path" in no_raw["message"]


def test_settings_the_harness_refuses_never_reach_the_runtime(folder: Path) -> None:
    refused = handle(FakeRuntime(folder), {"prompt": {"fill": " the", "tokens": 10}, "options": {"top_k": -1}})
    assert refused["error"] == "InvalidSearchOption" and refused["reached_runtime"] is False
    overflow = handle(FakeRuntime(folder, enforce_context=True), {"prompt": {"fill": " the", "context_offset": 1},
                                                                  "options": {}})
    assert overflow["error"] == "ContextOverflow" and overflow["reached_runtime"] is True


def test_no_recovery_check_after_a_request_that_never_reached_the_runtime(client: WorkerClient, folder: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    gates = resolve_gates(declare([builtin_gates()]))
    prober = Prober(client, gates, read_model_info(folder))
    prober.start()
    sent: list[dict[str, object]] = []
    real_request = client.request
    monkeypatch.setattr(client, "request", lambda payload, timeout_s: sent.append(dict(payload)) or real_request(
        payload, timeout_s))
    prober.check({"prompt": {"text": "hi"}, "options": {"temperature": -1.0}}, "reject")
    assert len(sent) == 1  # the request alone
    prober.check({"prompt": {"text": "hi"}, "options": {"max_new_tokens": 2}}, "answer")
    assert len(sent) == 3 and sent[2] == KNOWN_GOOD  # the request, then the recovery check


def test_serve_answers_each_line_with_its_id(folder: Path) -> None:
    requests = [encode_line({**HELLO, "id": 7}), b"\n",
                encode_line({"prompt": {"text": ""}, "options": {"top_p": 2}, "id": 8})]
    out = io.BytesIO()
    serve(FakeRuntime(folder), requests, out)
    responses = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["id"], r["kind"]) for r in responses] == [(7, "answered"), (8, "rejected")]


def test_fill_builds_exact_token_counts(folder: Path) -> None:
    runtime = FakeRuntime(folder)  # one token per character
    for tokens in (0, 1, 63, 257):
        assert len(runtime.encode(fill_text(runtime, " the", tokens))) == tokens


def test_fill_says_when_a_count_cannot_be_reached(folder: Path) -> None:
    class Pairs(FakeRuntime):
        def encode(self, text: str) -> list[int]:
            return [3, 3] * len(text)  # every count is even

    with pytest.raises(WorkerError, match="cannot build a prompt of exactly 5 tokens"):
        fill_text(Pairs(folder), "x", 5)


class Merging(FakeRuntime):
    """A tokenizer that merges a run of up to 8 equal characters into one token (as Qwen2.5's does for 'x')."""

    def encode(self, text: str) -> list[int]:
        return [ord(text[i]) % 256 for i in range(0, len(text), 8)]


@pytest.mark.parametrize("context", [256, 32_768, 131_072])
def test_past_context_prompts_pass_the_context_however_the_tokenizer_merges(tmp_path: Path, context: int) -> None:
    merging = Merging(write_genai_folder(tmp_path / "m", context_length=context), enforce_context=True)
    plain = FakeRuntime(write_genai_folder(tmp_path / "p", context_length=context))
    for runtime in (merging, plain):
        tokens = len(runtime.encode(past_context_text(runtime, "x")))
        assert context < tokens <= 4 * (context + 1), (type(runtime).__name__, tokens)
    answered = handle(merging, {"prompt": {"past_context": "x"}, "options": {"max_new_tokens": 4}})
    assert answered["error"] == "ContextOverflow", answered


def test_a_unit_that_never_passes_the_context_is_a_worker_error(folder: Path) -> None:
    class Nothing(FakeRuntime):
        def encode(self, text: str) -> list[int]:
            return [1]

    with pytest.raises(WorkerError, match="still fits the context"):
        past_context_text(Nothing(folder), "x")


@pytest.mark.parametrize(("code", "expected"), [
    (-signal.SIGSEGV, ("SIGSEGV", "SIGSEGV")), (-signal.SIGABRT, ("SIGABRT", "SIGABRT")),
    (3, ("exit code 3", None)), (0, ("exited (code 0) without answering", None)),
])
def test_death_names_the_signal_or_code(code: int, expected: tuple[str, str | None]) -> None:
    """POSIX's reading, asked for: on a Windows host these codes are Windows' (see test_windows_worker.py)."""
    assert death(code, platform="linux") == expected


def test_answers_and_rejections_are_classified(client: WorkerClient) -> None:
    answered = client.request(HELLO, timeout_s=30)
    assert answered.kind == "answered" and answered.answer is not None and len(answered.answer.token_ids) == 4
    rejected = client.request({"prompt": {"text": "hello"}, "options": {"top_k": -1}}, timeout_s=30)
    assert rejected.kind == "rejected" and rejected.error == "InvalidSearchOption"
    assert rejected.summary().startswith("rejected: InvalidSearchOption: invalid search option: top_k")
    assert client.starts == 1


@pytest.mark.skipif(sys.platform == "win32", reason="Windows has no SIGSEGV or SIGABRT to name: a crash is an NTSTATUS "
                    "or exit code 3, named in tests/unit/test_windows_worker.py (test_a_crash_is_named_as_on_windows_"
                    "with_its_own_stderr, test_death_names_windows_crash_codes)")
@pytest.mark.parametrize(("marker", "name", "trace"), [
    ("SEGV-ME", "SIGSEGV", "Fatal Python error: Segmentation fault"),
    ("ABORT-ME", "SIGABRT", "Fatal Python error: Aborted"),
])
def test_a_crash_is_classified_and_the_worker_restarts(client: WorkerClient, marker: str, name: str,
                                                       trace: str) -> None:
    client.request(HELLO, timeout_s=30)
    crashed = client.request({"prompt": {"text": f"please {marker}"}, "options": {}}, timeout_s=30)
    assert (crashed.kind, crashed.signal, crashed.summary()) == ("crashed", name, f"crashed: {name}")
    assert trace in crashed.stderr and "in _trip" in crashed.stderr  # the worker's Python stack
    assert not client.alive
    again = client.request(HELLO, timeout_s=30)
    assert again.kind == "answered" and client.starts == 2 and client.restarts == 1


def test_a_hang_is_killed_at_the_limit_and_shows_where_it_hung(client: WorkerClient) -> None:
    client.request(HELLO, timeout_s=30)
    hung = client.request({"prompt": {"text": "HANG-ME"}, "options": {}}, timeout_s=1.0)
    assert hung.kind == "hung" and hung.summary() == "hung: no answer within 1 s (worker killed)"
    assert 1.0 <= hung.seconds < 10
    if system.STACK_DUMP_SIGNAL is not None:  # Windows has no signal to ask for the stacks: no dump there
        assert "in _trip" in hung.stderr  # faulthandler's stack dump, taken before the kill
    assert client.request(HELLO, timeout_s=30).kind == "answered" and client.starts == 2


def test_a_worker_that_cannot_load_is_one_clear_error(folder: Path) -> None:
    with WorkerClient.for_model(folder, runtime="harness.no_such_module:factory") as broken, \
            pytest.raises(WorkerError) as error:
        broken.start()
    first, *rest = str(error.value).splitlines()
    assert first.startswith(f"the model worker did not start (loading harness.no_such_module:factory on "
                            f"{folder}: ModuleNotFoundError: No module named 'harness.no_such_module'): ")
    assert rest[0] == "worker stderr:"


def test_a_runtime_spec_without_factory_is_named(folder: Path) -> None:
    with WorkerClient.for_model(folder, runtime="harness.testing.worker_fakes") as broken, \
            pytest.raises(WorkerError, match=r"worker runtime 'harness\.testing\.worker_fakes' must be module:factory"):
        broken.start()


def test_a_worker_that_never_says_ready_times_out(folder: Path) -> None:
    with WorkerClient([sys.executable, "-c", "import time; time.sleep(60)"], load_timeout_s=0.5) as silent, \
            pytest.raises(WorkerError, match=r"did not start \(not ready within 0.5 s\)"):
        silent.start()


def test_a_factory_the_worker_cannot_import_is_one_line_at_session_start() -> None:
    from harness.errors import ConfigError
    from harness.runtime.factory import reference_of

    with pytest.raises(ConfigError, match="must be a function or class defined at module level"):
        reference_of(lambda path, ep: None)  # type: ignore[arg-type,return-value]


def test_a_conftest_factory_is_loaded_from_its_file(tmp_path: Path) -> None:
    """pytest imports a conftest under a name no other process can import: the worker loads its file."""
    from harness.runtime.factory import load

    conftest = tmp_path / "conftest.py"
    conftest.write_text("def make_runtime(path, ep):\n    return ('made', path, ep)\n", encoding="utf-8")
    factory = load(f"conftest:make_runtime@{conftest}")
    assert factory(Path("m"), "cpu") == ("made", Path("m"), "cpu")  # type: ignore[comparison-overlap]
