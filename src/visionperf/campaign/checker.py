"""MLCommons' own submission checker, run on the campaign's tree where the user points to a
checkout of it (never required: `submission` already applies the round's rules)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

CHECKER_TIMEOUT_S = 1800.0


@dataclass
class Verdict:
    passed: bool
    errors: list[str]  # the checker's ERROR lines
    summary: str  # its last SUMMARY line (or its last line)
    command: list[str]


def checker_command(checkout: Path, tree: Path, version: str, submitter: str) -> tuple[list[str], Path]:
    """(argv, working directory) for the checker in CHECKOUT (the inference repository or its
    tools/submission folder): the modular checker (`submission_checker/main.py`, run as a module
    from its folder, as its README says) where the checkout has it, else `submission_checker.py`."""
    for base in (checkout, checkout / "tools" / "submission"):
        if (base / "submission_checker" / "main.py").exists():
            return ([sys.executable, "-m", "submission_checker.main", "--input", str(tree), "--version", version,
                     "--submitter", submitter], base)
        if (base / "submission_checker.py").exists():
            return ([sys.executable, str(base / "submission_checker.py"), "--input", str(tree), "--version",
                     version, "--submitter", submitter], base)
    raise UserError(f"--checker {checkout} holds no MLCommons submission checker (submission_checker/main.py or "
                    "submission_checker.py, in it or in its tools/submission): pass a checkout of "
                    "mlcommons/inference")


def run_checker(checkout: Path, tree: Path, version: str, submitter: str) -> Verdict:
    """The checker's verdict on TREE (the folder holding closed/)."""
    argv, cwd = checker_command(checkout, tree.resolve(), version, submitter)
    try:
        p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, errors="replace", timeout=CHECKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return Verdict(False, [f"the checker did not finish in {CHECKER_TIMEOUT_S:g} s"], "", argv)
    lines = (p.stdout + p.stderr).splitlines()
    # "[time file:line ERROR] text": the text alone; its per-folder roll-ups say nothing new
    errors = [ln.split("ERROR]", 1)[1].strip() for ln in lines if "ERROR]" in ln]
    errors = [e.replace(f"{tree.resolve()}/", "") for e in errors if not e.startswith(("Some ", "SUMMARY"))]
    summary = next((ln for ln in reversed(lines) if "SUMMARY" in ln), lines[-1] if lines else "")
    return Verdict(p.returncode == 0, errors, summary, argv)
