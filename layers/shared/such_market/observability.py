"""The structured JSON logger shared by every function (Powertools ``Logger``).

Created once at import; it reads the Powertools variables set in the template's Globals (service
name, log level). Log calls pass error types and identifiers, never secrets, keys or request bodies.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger

logger = Logger(service="such-market")
