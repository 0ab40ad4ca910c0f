"""junit.xml: one testcase per check, so CI dashboards show which part of a scenario failed."""

from __future__ import annotations

from pathlib import Path


def write_junit(report: dict, path: Path) -> None:
    from junitparser import Failure, JUnitXml, Skipped, TestCase, TestSuite

    suite = TestSuite(f"faultflow.{report['scenario']}")
    suite.timestamp = None
    suite.add_property("verdict", report["verdict"])
    if report.get("run_id"):
        suite.add_property("run_id", str(report["run_id"]))
    for name, value in report["figures"].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and name.endswith(("_s", "_fault")):
            suite.add_property(name, f"{value:.3f}")
    for check in report["checks"]:
        case = TestCase(check["name"], classname=f"{report['scenario']}.{check['classname']}", time=0.0)
        if check["status"] == "failed":
            case.result = [Failure(check["reason"] or "failed", type_="CheckFailed")]
        elif check["status"] == "skipped":
            case.result = [Skipped(check["reason"] or "skipped")]
        suite.add_testcase(case)
    suite.update_statistics()
    xml = JUnitXml()
    xml.add_testsuite(suite)
    xml.write(str(path), pretty=True)
