"""The SAM template as plain CloudFormation: the SAM translator (``samtranslator``) run offline.

The translator lives in the SAM CLI's virtual environment (``.venv-sam``: it pins its own boto3 and
pydantic), so ``transformed_template`` runs this module there as a subprocess (``python -m
local.rehearsal.translate template.yaml`` prints the JSON) and reads its output. Local code locations
(``CodeUri: functions/health/``) become ``s3://rehearsal/<path>`` (the translator wants an S3 URI; ``sam
build``/``deploy`` would upload them): the key keeps the path, so a function's code is found again from
its ``Code.S3Key``. No managed policy is looked up by name (no AWS call): the template references its
policies by ARN or ``!Ref``.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[2]
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
CODE_BUCKET = "rehearsal"
REGION = "us-east-1"
_LOCAL_URI_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Serverless::Application": "Location",
    "AWS::CloudFormation::Stack": "TemplateURL",
}


class TranslationError(RuntimeError):
    """The SAM translator refused the template (its message says why)."""


def transformed_template(template: Path) -> dict[str, Any]:
    """``template`` translated to plain CloudFormation (cached per file content)."""
    # a fresh copy on every call: callers may edit it
    return cast("dict[str, Any]", json.loads(_translated(template.resolve(), template.read_bytes())))


@functools.cache
def _translated(template: Path, content: bytes) -> str:
    del content  # part of the cache key only
    if not SAM_PYTHON.exists():
        raise TranslationError(f"{SAM_PYTHON} is missing: run `make install` (the SAM CLI's venv)")
    environment = {**os.environ, "AWS_DEFAULT_REGION": REGION, "PYTHONPATH": str(ROOT)}
    finished = subprocess.run(
        [str(SAM_PYTHON), "-m", "local.rehearsal.translate", str(template)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
        timeout=120,
        check=False,
    )
    if finished.returncode != 0:
        raise TranslationError(finished.stderr.strip() or f"the translator exited with {finished.returncode}")
    return finished.stdout


def code_path(function: dict[str, Any]) -> Path | None:
    """Where the code of a translated ``AWS::Lambda::Function`` is (``None``: not local code)."""
    code = function.get("Properties", {}).get("Code", {})
    if code.get("S3Bucket") != CODE_BUCKET or not isinstance(code.get("S3Key"), str):
        return None
    return ROOT / cast("str", code["S3Key"])


def _translate(template: Path) -> dict[str, Any]:  # pragma: no cover - runs in the SAM CLI's venv
    from samtranslator.translator.transform import transform  # type: ignore[import-not-found]
    from samtranslator.yaml_helper import yaml_parse  # type: ignore[import-not-found]

    document = yaml_parse(template.read_text(encoding="utf-8"))
    for resource in document.get("Resources", {}).values():
        key = _LOCAL_URI_PROPERTIES.get(resource.get("Type"))
        properties = resource.get("Properties", {})
        location = properties.get(key) if key else None
        if isinstance(location, str) and not location.startswith(("s3://", "https://")):
            folder = "/" if (template.parent / location).is_dir() else ""
            properties[key] = f"s3://{CODE_BUCKET}/{location.rstrip('/')}{folder}"

    class _NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    return cast("dict[str, Any]", transform(document, {}, _NoManagedPolicies()))


if __name__ == "__main__":  # pragma: no cover - the subprocess of transformed_template
    json.dump(_translate(Path(sys.argv[1])), sys.stdout)
