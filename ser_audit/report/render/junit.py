"""JUnit XML: one test case per gate, so CI systems show gate outcomes natively."""

from __future__ import annotations

from xml.etree import ElementTree

from ser_audit.report.model import Report


class JunitRenderer:
    suffix = ".junit.xml"

    def render(self, report: Report) -> str:
        failures = sum(not gate.passed for gate in report.gates)
        suite = ElementTree.Element(
            "testsuite", name=f"ser-audit {report.model.path}", tests=str(len(report.gates)),
            failures=str(failures), errors="0", timestamp=report.created,
        )
        for gate in report.gates:
            case = ElementTree.SubElement(suite, "testcase", classname="ser-audit.gates", name=gate.name)
            if not gate.passed:
                failure = ElementTree.SubElement(
                    case, "failure", message=f"{gate.name}: {gate.value:.4f} against threshold {gate.threshold}",
                )
                failure.text = gate.detail
        ElementTree.indent(suite)
        return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
