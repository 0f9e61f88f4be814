"""JUnit XML: one test case per gate, so CI systems show gate outcomes natively.

Names and details pass through :func:`escaping.xml` (XML 1.0 forbids some code points outright;
ElementTree escapes the rest), so the file stays well-formed whatever a policy or model calls things.
"""

from __future__ import annotations

from xml.etree import ElementTree

from ser_audit.report.model import Report
from ser_audit.report.render.escaping import xml


class JunitRenderer:
    suffix = ".junit.xml"

    def render(self, report: Report) -> str:
        failures = sum(not gate.passed for gate in report.gates)
        suite = ElementTree.Element(
            "testsuite", name=xml(f"ser-audit {report.model.path}"), tests=str(len(report.gates)),
            failures=str(failures), errors="0", timestamp=xml(report.created),
        )
        for gate in report.gates:
            case = ElementTree.SubElement(suite, "testcase", classname="ser-audit.gates", name=xml(gate.name))
            if not gate.passed:
                failure = ElementTree.SubElement(
                    case, "failure", message=xml(f"{gate.name}: {gate.value:.4f} against threshold {gate.threshold}"),
                )
                failure.text = xml(gate.detail)
        ElementTree.indent(suite)
        return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
