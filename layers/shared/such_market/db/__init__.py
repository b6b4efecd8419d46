"""PostgreSQL access: the connection of the container, the migration runner, the consistency check."""
