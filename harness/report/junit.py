"""``junit.xml``: a run's checks as pytest's JUnit report names them, each with its recorded metrics as
properties and the harness's own outcomes (unstable; a comparison's regressed, inconclusive or within) as
properties."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from harness.fsutil import write_text_atomic
from harness.properties import FINDING_PREFIX, OUTCOME_PROPERTY
from harness.report.compare import broken_check

MESSAGE_LIMIT = 4000  # characters of a failure message kept in the report files


def _junit_names(nodeid: str) -> tuple[str, str]:
    """(classname, name) as pytest's own JUnit report spells them."""
    path, _, rest = nodeid.partition("::")
    parts = [path.replace("/", ".").removesuffix(".py"), *rest.split("::")]
    return ".".join(parts[:-1]), parts[-1]


def _comparison_properties(baseline: Mapping[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """Per check id, its comparison with the baseline as (``compare:METRIC``, ``VERDICT: why``) properties."""
    found: dict[str, list[tuple[str, str]]] = {}
    for line in baseline.get("broken", []):
        check = broken_check(str(line))
        found.setdefault(check, []).append(("compare:outcome", f"regression: {line}"))
    for delta in baseline.get("deltas", []):
        found.setdefault(str(delta["test"]), []).append((f"compare:{delta['metric']}",
                                                         f"{delta['verdict']}: {delta.get('note', '')}"))
    return found


def write_junit(path: Path, results: Mapping[str, Any], details: Mapping[str, str]) -> None:
    """A JUnit XML file of the checks, each with its recorded metrics as properties (written atomically)."""
    write_text_atomic(path, junit_xml(results, details))


def junit_xml(results: Mapping[str, Any], details: Mapping[str, str]) -> str:
    """The JUnit XML document of the checks, each with its recorded metrics as properties."""
    totals, run = results["totals"], results["run"]
    suite = ElementTree.Element("testsuite", {
        "name": "onnx-slm-harness", "tests": str(sum(totals.values())),
        "failures": str(totals["failed"] + totals["xpassed"]), "errors": str(totals["error"]),
        "skipped": str(totals["skipped"] + totals["xfailed"]),
        "time": f"{run['duration_s']:.3f}", "timestamp": run["started"]})
    properties = ElementTree.SubElement(suite, "properties")
    baseline = results.get("baseline") or {}
    against = (("baseline", baseline.get("path")), ("comparison", baseline.get("verdict"))) if baseline else ()
    for name, value in (*results["key"].items(), ("run", run["id"]), ("profile", run["profile"]), *against):
        ElementTree.SubElement(properties, "property", {"name": name, "value": str(value)})
    verdicts = _comparison_properties(baseline)
    for check in results["tests"]:
        classname, name = _junit_names(check["nodeid"])
        case = ElementTree.SubElement(suite, "testcase", {"classname": classname, "name": name,
                                                          "time": f"{check['duration_s']:.3f}"})
        outcome_property = check["properties"].get(OUTCOME_PROPERTY)
        findings = check.get("findings", [])
        compared = verdicts.get(str(check["id"]), [])
        if check["metrics"] or outcome_property or findings or compared:
            props = ElementTree.SubElement(case, "properties")
            for metric, value in [*check["metrics"].items(), *compared]:
                ElementTree.SubElement(props, "property", {"name": metric, "value": str(value)})
            for finding in findings:  # a finding shows whatever the outcome (a pass included)
                ElementTree.SubElement(props, "property", {"name": f"{FINDING_PREFIX}{finding['kind']}",
                                                           "value": finding["text"]})
            if outcome_property:  # an outcome JUnit has no element for (unstable, inconclusive)
                ElementTree.SubElement(props, "property", {"name": OUTCOME_PROPERTY, "value": str(outcome_property)})
                ElementTree.SubElement(case, "system-out").text = check["message"] or ""
        message = (check["message"] or "")[:MESSAGE_LIMIT]
        tag = {"failed": "failure", "xpassed": "failure", "error": "error", "skipped": "skipped",
               "xfailed": "skipped"}.get(check["outcome"])
        if tag:
            ElementTree.SubElement(case, tag, {"message": message}).text = details.get(check["nodeid"]) or message
    root = ElementTree.Element("testsuites")
    root.append(suite)
    ElementTree.indent(root)
    document: bytes = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    return document.decode("utf-8")


