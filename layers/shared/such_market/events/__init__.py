"""Domain events on the EventBridge bus: their schemas, the publisher, the outbox and idempotent consumers.

- ``models``    the versioned pydantic schema of every detail type (SPEC §6) and the ``Event`` envelope;
- ``publisher`` ``PutEvents`` in batches with bounded, jittered retries of the failed entries only;
- ``outbox``    the transactional outbox: an event commits with its data change, is published right
  after commit, and a scheduled relay publishes whatever a crash left behind (at-least-once);
- ``consumer``  the base of EventBridge-triggered functions: each ``eventId`` is handled once
  (Powertools idempotency, records in the durable Redis namespace).

Importing this package is cheap: boto3, psycopg and redis are imported on first use.
"""
