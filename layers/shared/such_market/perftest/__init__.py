"""The live cache performance test (``/api/admin/cache/test/performance``): measurements (``runner``),
run records (``store``) and the use cases that start, run, read and reset them (``service``)."""
