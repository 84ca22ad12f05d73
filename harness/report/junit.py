"""``junit.xml``: a run's checks as pytest's JUnit report names them, each with its recorded metrics as
properties and the harness's own outcomes (unstable) as a property."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from harness.properties import FINDING_PREFIX, OUTCOME_PROPERTY

MESSAGE_LIMIT = 4000  # characters of a failure message kept in the report files


def _junit_names(nodeid: str) -> tuple[str, str]:
    """(classname, name) as pytest's own JUnit report spells them."""
    path, _, rest = nodeid.partition("::")
    parts = [path.replace("/", ".").removesuffix(".py"), *rest.split("::")]
    return ".".join(parts[:-1]), parts[-1]


def write_junit(path: Path, results: Mapping[str, Any], details: Mapping[str, str]) -> None:
    """A JUnit XML file of the checks, each with its recorded metrics as properties."""
    totals, run = results["totals"], results["run"]
    suite = ElementTree.Element("testsuite", {
        "name": "onnx-slm-harness", "tests": str(sum(totals.values())),
        "failures": str(totals["failed"] + totals["xpassed"]), "errors": str(totals["error"]),
        "skipped": str(totals["skipped"] + totals["xfailed"]),
        "time": f"{run['duration_s']:.3f}", "timestamp": run["started"]})
    properties = ElementTree.SubElement(suite, "properties")
    for name, value in (*results["key"].items(), ("run", run["id"]), ("profile", run["profile"])):
        ElementTree.SubElement(properties, "property", {"name": name, "value": str(value)})
    for check in results["tests"]:
        classname, name = _junit_names(check["nodeid"])
        case = ElementTree.SubElement(suite, "testcase", {"classname": classname, "name": name,
                                                          "time": f"{check['duration_s']:.3f}"})
        outcome_property = check["properties"].get(OUTCOME_PROPERTY)
        findings = check.get("findings", [])
        if check["metrics"] or outcome_property or findings:
            props = ElementTree.SubElement(case, "properties")
            for metric, value in check["metrics"].items():
                ElementTree.SubElement(props, "property", {"name": metric, "value": str(value)})
            for finding in findings:  # a finding shows whatever the outcome (a pass included)
                ElementTree.SubElement(props, "property", {"name": f"{FINDING_PREFIX}{finding['kind']}",
                                                           "value": finding["text"]})
            if outcome_property:  # an outcome JUnit has no element for (unstable)
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
    path.write_bytes(ElementTree.tostring(root, encoding="utf-8", xml_declaration=True))


