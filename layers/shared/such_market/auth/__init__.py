"""Authentication of operators on the admin routes."""
