"""such-market's shared layer: every piece of logic, SQL, cache and upstream code of the backend.

Handlers in ``functions/`` stay thin: they parse input, call one use case from this package and shape
the response. Importing the package itself is cheap and has no side effects; heavy modules (psycopg,
redis, boto3, httpx) are imported by the modules that need them, on first use.
"""
