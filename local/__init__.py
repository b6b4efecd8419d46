"""The local runtime behind ``make dev`` and the tests: never shipped in the layer."""
