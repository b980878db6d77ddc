"""The closing summary of `make up` / `make test`: every stage, integration test module and molecule
step with its duration next to its budget (tests/timing/budgets.yml), and the ones over budget named.

Inputs, all written by the run itself:
  $STAGE_TIMINGS               "<stage> <seconds>s <result>" per line (tests/stage)
  $STAGE_TIMINGS.molecule      "<step> <seconds>" per line (tests/timing/molecule)
  .cache/junit/integration.xml pytest's JUnit XML: a test's time is its setup, call and teardown,
                               so a module's sum includes its fixtures (a shared VPS is counted in
                               the first module that asks for it).

Usage: report.py [--budgets FILE]. Always exits 0: budgets inform, the tests decide.
"""

from __future__ import annotations

import argparse
import os
import sys
import xml.etree.ElementTree as ET
from collections import OrderedDict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def stage_times(path: Path) -> "OrderedDict[str, tuple[int, str]]":
    """stage -> (seconds, result) in run order."""
    times: OrderedDict[str, tuple[int, str]] = OrderedDict()
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split(None, 2)
            if len(parts) >= 2 and parts[1].endswith("s"):
                times[parts[0]] = (int(parts[1][:-1]), parts[2] if len(parts) > 2 else "")
    return times


def module_times(junit: Path) -> "OrderedDict[str, tuple[float, int, int]]":
    """test module file name -> (seconds, tests, failed) from a pytest JUnit XML file, in run order."""
    modules: OrderedDict[str, list] = OrderedDict()
    if not junit.exists():
        return OrderedDict()
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")[-1] + ".py"
        entry = modules.setdefault(module, [0.0, 0, 0])
        entry[0] += float(case.get("time", 0))
        entry[1] += 1
        entry[2] += any(child.tag in ("failure", "error") for child in case)
    return OrderedDict((name, tuple(values)) for name, values in modules.items())


def molecule_times(path: Path) -> "OrderedDict[str, int]":
    times: OrderedDict[str, int] = OrderedDict()
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                times[parts[0]] = times.get(parts[0], 0) + int(parts[1])
    return times


def table(title: str, rows, budgets: dict, over: list) -> list[str]:
    lines = ["", "%s" % title, "  %-34s %8s %8s" % ("", "seconds", "budget")]
    for name, seconds, note in rows:
        budget = budgets.get(name)
        flag = ""
        if budget is not None and seconds > budget:
            flag = "  OVER BUDGET"
            over.append("%s %s (%ds > %ds)" % (title.split()[0].lower(), name, seconds, budget))
        shown = budget if budget is not None else "-"
        lines.append("  %-34s %8d %8s%s%s" % (name, round(seconds), shown, ("  " + note) if note else "", flag))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=Path, default=ROOT / "tests" / "timing" / "budgets.yml")
    args = parser.parse_args()
    budgets = yaml.safe_load(args.budgets.read_text()) if args.budgets.exists() else {}
    timings = Path(os.environ.get("STAGE_TIMINGS", ROOT / ".cache" / "timings"))
    stages = stage_times(timings)
    if not stages:
        return 0
    over: list[str] = []
    out = ["", "==> Timing summary (budgets: %s)" % args.budgets.relative_to(ROOT)]
    out += table("Stages", [(n, s, r) for n, (s, r) in stages.items()], budgets.get("stages", {}), over)
    out.append("  %-34s %8d" % ("total", sum(seconds for seconds, _result in stages.values())))
    modules = module_times(ROOT / ".cache" / "junit" / "integration.xml") if "integration" in stages else {}
    if modules:
        rows = [(n, s, "%d tests%s" % (t, ", %d failed" % f if f else "")) for n, (s, t, f) in modules.items()]
        out += table("Integration test modules", rows, budgets.get("integration", {}), over)
    steps = molecule_times(Path(str(timings) + ".molecule")) if "molecule" in stages else {}
    if steps:
        out += table("Molecule steps", [(n, s, "") for n, s in steps.items()], budgets.get("molecule", {}), over)
    out.append("")
    out.append("over budget: %s" % ("; ".join(over) if over else "none"))
    passed = sum(1 for _seconds, result in stages.values() if result == "ok")
    out.append("stages: %d passed, %d failed" % (passed, len(stages) - passed))
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
