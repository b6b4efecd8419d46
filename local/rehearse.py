"""``python -m local.rehearse [template.yaml]``: the rehearsal of a deployment, without AWS (``make rehearse``).

The template is translated by the SAM translator, checked statically against what each function's code
reads (``local.rehearsal.checks``), then its IAM-relevant part is created in moto with IAM enforced and
every function's cold start runs under its own role (``local.rehearsal.moto_deploy``). Prints every
finding and failed start; exits 1 when there is any. ``make rehearse`` runs ``cfn-lint`` and ``sam
validate --lint`` first.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from local.rehearsal.checks import check_template, functions
from local.rehearsal.evaluate import scenarios
from local.rehearsal.moto_deploy import rehearse
from local.rehearsal.translate import ROOT, transformed_template

log = logging.getLogger("rehearse")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("template", nargs="?", type=Path, default=ROOT / "template.yaml")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    started = time.monotonic()
    template = transformed_template(arguments.template)
    static, moto = scenarios(template, every_choice=True), scenarios(template)
    findings = check_template(template)
    for finding in findings:
        log.error("static: %s", finding)
    failed = rehearse(template)
    for start in failed:
        log.error("moto: %s did not start: %s", start.function, start.error)
    count = len(functions(template))
    log.info(
        "rehearsal of %s: %d functions, %d static findings (%d scenarios), %d failed starts (%d scenarios) in %.1f s",
        arguments.template.name,
        count,
        len(findings),
        len(static),
        len(failed),
        len(moto),
        time.monotonic() - started,
    )
    return 1 if findings or failed else 0


if __name__ == "__main__":
    sys.exit(main())
