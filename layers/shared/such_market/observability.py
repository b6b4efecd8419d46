"""Logger, Metrics and Tracer singletons shared by every function (Powertools).

Created once at import; they read the Powertools environment variables set in the template's
Globals (service name, log level, metrics namespace). Secrets are never passed to them.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger

logger = Logger(service="such-market")
