"""The building blocks of the self-contained HTML reports: one file each, inline CSS, a few lines of inline
script (filters and search; without it every row is simply shown), SVG plots, no network."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from harness.report.charts import fmt

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;color:#222;max-width:1100px;padding:0 1em}
table{border-collapse:collapse;margin:.6em 0;font-size:14px;width:100%;table-layout:auto}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code.id{overflow-wrap:normal;word-break:normal}td.verdict,td.fact,#checks td:nth-child(2){white-space:nowrap}
pre .fail-line{color:#b00020;font-weight:bold;background:#fdecee}
.answer{border-left:3px solid #ccc;padding-left:.6em;margin:.4em 0}.answer b{font-size:13px}
.failed,.error,.xpassed,.regression,.regressed{color:#b00020;font-weight:bold}
.passed,.improvement{color:#1b7f2a}.skipped,.xfailed{color:#777}.unstable,.inconclusive{color:#a05a00;font-weight:bold}
.banner{padding:.8em 1.2em;border-radius:6px;color:#fff;font-size:1.4em;font-weight:bold;margin:0 0 1em}
.banner small{display:block;font-size:.6em;font-weight:normal;margin-top:.3em}
.banner.failed,.banner.regressed{background:#b00020;color:#fff}.banner.passed{background:#1b7f2a;color:#fff}
.banner.unstable,.banner.inconclusive,.banner.findings{background:#a05a00;color:#fff}
.findings{color:#a05a00;font-weight:bold}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f6f6;padding:6px;font-size:13px;margin:.3em 0}
details>summary{cursor:pointer}section{margin:1.5em 0}
figure{margin:1.5em 0}figcaption{font-weight:bold}figcaption .note{display:block;font-weight:normal;font-size:13px}
svg{max-width:100%;height:auto}svg text{font-size:11px;fill:#333}.axis{stroke:#888}.grid{stroke:#eee}
code{font-size:13px}.controls{display:flex;gap:1em;flex-wrap:wrap;align-items:center;margin:.5em 0}
.finding{border-left:4px solid #a05a00;padding:.2em .8em;margin:.6em 0}
"""

# Filter the checks table by outcome and suite, and search its text; the file keeps working offline.
SCRIPT = """
function harnessFilter(){
  const outcome=document.getElementById('filter-outcome').value, suite=document.getElementById('filter-suite').value,
        text=document.getElementById('filter-text').value.toLowerCase();
  let shown=0;
  for(const row of document.querySelectorAll('#checks tbody tr')){
    const ok=(!outcome||row.dataset.outcome===outcome)&&(!suite||row.dataset.suite===suite)
      &&(!text||row.textContent.toLowerCase().includes(text));
    row.hidden=!ok; shown+=ok;
  }
  document.getElementById('filter-count').textContent=shown+' shown';
}
"""


class Raw(str):
    """HTML already rendered (a link, say): ``table`` puts it in a cell as it is."""


_ID_BREAKS = re.compile(r"(::|[/_-])")


def identifier(name: str) -> Raw:
    """A check's id or a gate's name, which a narrow column wraps where a reader would: after "::", "/", "_" and
    "-", before "[" (never mid-word: ``code.id`` drops the cells' break-anywhere)."""
    text = _ID_BREAKS.sub(r"\1<wbr>", escape(name)).replace("[", "<wbr>[")
    return Raw(f'<code class="id">{text}</code>')


def check_label(test_id: str) -> str:
    """What a check measures, for a legend: its function's name without ``test_``, in words, with its parameters
    (``test_benchmarks.py::test_generation_latency[prompt=32]``: "generation latency (prompt=32)")."""
    name, bracket, params = test_id.split("::")[-1].partition("[")
    words = name.removeprefix("test_").replace("_", " ")
    return f"{words} ({params.removesuffix(']')})" if bracket else words


def readable(value: Any) -> str:
    """A value as a reader writes it: ``{'4': 151}`` as "4: 151", a list as its items joined by commas."""
    if isinstance(value, Mapping):
        return "; ".join(f"{key}: {readable(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(readable(item) for item in value)
    return fmt(value) if isinstance(value, float) else str(value if value is not None else "")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], classes: Sequence[str] | None = None,
          table_id: str = "") -> str:
    """An HTML table of plain values (escaped), without a header row when ``header`` is empty; numbers
    right-aligned, mappings and lists written out (``readable``), ``classes`` (one per row) on the first cell."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = []
    for index, row in enumerate(rows):
        cells = []
        for position, cell in enumerate(row):
            number = isinstance(cell, int | float) and not isinstance(cell, bool)
            css = ["num"] if number else []
            if position == 0 and classes:
                css.append(classes[index])
            attr = f' class="{" ".join(css)}"' if css else ""
            text = cell if isinstance(cell, Raw) else escape(readable(cell))
            cells.append(f"<td{attr}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    identity = f' id="{escape(table_id)}"' if table_id else ""
    thead = f"<thead><tr>{head}</tr></thead>" if header else ""
    return f"<table{identity}>{thead}<tbody>{''.join(body)}</tbody></table>"


def page(title: str, body: str, script: str = "") -> str:
    code = f"<script>{script}</script>" if script else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style>{code}</head><body>{body}</body></html>\n")
