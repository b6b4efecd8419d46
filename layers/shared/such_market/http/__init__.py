"""HTTP plumbing shared by the API handlers: the resolver factory and JSON/error responses."""
