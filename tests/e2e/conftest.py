"""The real default model, built once for the end-to-end tests (shared with the suites' cache)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.session import HarnessSession
from tests.e2e.support import open_session, progress


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> HarnessSession:
    session = open_session(tmp_path_factory.mktemp("reports"))
    session.prepare(progress)
    return session


@pytest.fixture(scope="session")
def built_path(built: HarnessSession) -> Path:
    assert built.prepared is not None
    return built.prepared.path


@pytest.fixture(scope="session")
def default_hf_folder(built: HarnessSession) -> Path:
    """The default model as a Hugging Face folder: its GGUF's cached conversion (the parity reference, the base the
    adapter tests and the fine-tune example start from)."""
    folder = built.reference_folder(progress)
    assert folder is not None
    return folder
