"""Cache analytics from real traffic: what each cache-fronted response cost and how it was served.

- ``histogram``: log-bucketed latency histograms (DDSketch's idea) that merge exactly across containers
  and give any percentile within ``RELATIVE_ACCURACY``;
- ``recorder``: the container's aggregate of (endpoint family, outcome, latency), flushed to Valkey in one
  pipelined call at most every few seconds, best effort, and as CloudWatch EMF;
- ``store``: the per-minute analytics hashes and the alerts under the durable prefix (data access);
- ``report``: the ``GET /api/admin/cache/metrics`` answer (windows merged from the minute hashes,
  breakdowns, alerts, the event pipeline, health) and the ``POST`` actions.
"""
