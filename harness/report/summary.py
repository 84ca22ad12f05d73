"""``summary.md``: a run for a CI job summary or a pull-request comment, narrow enough not to scroll sideways.

The verdict; the baseline comparison right after it (what regressed or is inconclusive); the failures by cause
with their full text; the findings; a few key metrics. Paths are relative to the project (the folder pytest ran in).
"""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.report import digest
from harness.report.compare import Comparison, markdown
from harness.text import clip_words, plural

FAILURE_LINES = 12  # lines of a failure's full text shown (the HTML report has all of it)
LINE_WIDTH = 100  # characters a line of it is wrapped at, so the comment never scrolls sideways
GROUP_IDS = 5  # ids listed per cause
FINDING_SHOWN = 600  # characters of a finding's text (its start and its end, where the advice is; report.html: all)


def _relative(path: str, root: Path) -> str:
    """``path`` from the project's folder, else from the folder pytest ran in: an absolute path on a CI runner
    means nothing to the reader of a pull-request comment."""
    for base in (root, Path.cwd()):
        try:
            if Path(path).is_relative_to(base):
                return Path(os.path.relpath(path, base)).as_posix()
        except ValueError:  # another drive on Windows
            continue
    return path


_QUOTED = re.compile(r"(?<!\w)(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")(?!\w)")  # not an apostrophe (model's)
_NUMBERS = re.compile(r"\[-?\d[\d.e+-]*(?:, -?\d[\d.e+-]*)+\]")  # a list of numbers: [0.12, 0.34, 0.56]
_KEPT_SPACE = "\ue000"  # a space of a quoted literal while wrapping: textwrap does not break there


def wrap(line: str) -> list[str]:
    """``line`` at LINE_WIDTH, broken between words, never inside a quoted literal or a list of numbers that fits on a
    line (a literal broken in two reads as two, with the continuation's indent inside it)."""
    for literal in (_QUOTED, _NUMBERS):
        line = literal.sub(lambda m: m[0].replace(" ", _KEPT_SPACE) if len(m[0]) <= LINE_WIDTH - 4 else m[0], line)
    parts = textwrap.wrap(line, LINE_WIDTH, subsequent_indent="    ", drop_whitespace=False, break_on_hyphens=False)
    return [part.replace(_KEPT_SPACE, " ") for part in parts] or [""]


def _excerpt(text: str) -> list[str]:
    """The failure's own words, each line wrapped, at most FAILURE_LINES of them."""
    wrapped = [part for line in text.splitlines() for part in wrap(line)]
    if len(wrapped) > FAILURE_LINES:
        wrapped = [*wrapped[:FAILURE_LINES], f"... ({len(wrapped) - FAILURE_LINES} more lines in report.html)"]
    return wrapped


def _code_block(text: str) -> list[str]:
    """A fenced block that the text cannot close: one backtick more than its longest run of them."""
    lines = _excerpt(text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}text", *lines, fence]


def _failures(tests: Sequence[Mapping[str, Any]]) -> list[str]:
    groups = digest.failure_groups(tests)
    if not groups:
        return []
    failed = sum(len(g.tests) for g in groups)
    lines = [f"### Failures: {plural(failed, 'check')}, {plural(len(groups), 'cause')}", ""]
    for group in groups:
        ids = [f"`{t['id']}`" for t in group.tests]
        more = f" and {len(ids) - GROUP_IDS} more" if len(ids) > GROUP_IDS else ""
        lines += [f"**{group.title}**", "", f"{plural(len(ids), 'check')}: {', '.join(ids[:GROUP_IDS])}{more}", "",
                  *_code_block(digest.under_heading(group.tests[0], group.title)), ""]
    return lines


def _findings(results: Mapping[str, Any]) -> list[str]:
    found = digest.findings_of(results)
    if not found:
        return []
    lines = [f"### Findings ({len(found)})", ""]
    lines += [f"- **{f.kind}** in `{f.check}` ({f.outcome}): {clip_words(' '.join(f.text.split()), FINDING_SHOWN)}"
              for f in found]
    return [*lines, ""]


def _comparison(results: Mapping[str, Any]) -> list[str]:
    baseline = results.get("baseline")
    return [markdown(Comparison.from_dict(baseline))] if baseline else []


def _key_metrics(results: Mapping[str, Any]) -> list[str]:
    gated = digest.gated_metrics(results)
    speed = [t["metrics"]["decode_tokens_per_s"] for t in results["tests"]
             if "test_benchmarks.py::" in t["id"] and "decode_tokens_per_s" in t.get("metrics", {})]
    ttft = [(t["metrics"]["prompt_tokens"], t["metrics"]["ttft_s"]) for t in results["tests"]
            if "test_benchmarks.py::" in t["id"] and {"ttft_s", "prompt_tokens"} <= set(t.get("metrics", {}))]
    peak = [t["metrics"]["peak_rss_mb"] for t in results["tests"] if "peak_rss_mb" in t.get("metrics", {})]
    rows = []
    if speed:
        rows.append(f"| decode tokens/s (median of the benchmarks) | {sorted(speed)[len(speed) // 2]:.4g} | |")
    if ttft:
        tokens, seconds = min(ttft)
        rows.append(f"| time to first token, {tokens:g}-token prompt | {seconds * 1e3:.4g} ms | |")
    if peak:
        rows.append(f"| peak RSS (largest of the checks) | {max(peak):.4g} MB | |")
    rows += [f"| {m.gate} | {m.measured:.4g} | {'≤' if m.bound == 'max' else '≥'} {m.limit:g}{m.unit}"
             f"{'' if m.within else ' **outside**'} |" for m in gated]
    return ["### Key metrics", "", "| metric | value | gate |", "|---|---:|---|", *rows, ""] if rows else []


def summary_markdown(results: Mapping[str, Any], root: Path | None = None) -> str:
    """A markdown summary; ``root``: the project folder that paths are shown relative to."""
    root = root or Path.cwd()
    run, provenance = results["run"], results["provenance"]
    verdict = digest.verdict_of(results)
    sha = str(provenance.get("source_sha256") or "")[:12]
    levels = "/".join(sorted(provenance.get("accuracy_levels") or {})) or "none"
    model = _relative(str(provenance.get("model")), root)
    name = provenance.get("model_name") or Path(model).name
    lines = [f"## {verdict.headline}: {name} {run['precision']} ({verdict.counts})", "",
             f"`{model}` · sha256 `{sha}` · ep {provenance.get('ep')} · profile {run['profile']} · "
             f"accuracy level {levels} · cpu {provenance.get('machine', {}).get('isa', '?')} · "
             f"{run['duration_s']:.0f} s", "",
             f"Report: `{_relative(str(run['report_dir']), root)}/report.html`", ""]
    for section in (_comparison(results), _failures(results["tests"]), _findings(results), _key_metrics(results)):
        lines += section
    table, recommended = digest.precision_table(results["tests"])
    if table:
        lines += ["### Precision comparison", "", f"Recommended: **{recommended or 'none passes every gate'}**; "
                  "the table is in `precisions.md`.", ""]
    return "\n".join(lines).rstrip() + "\n"
