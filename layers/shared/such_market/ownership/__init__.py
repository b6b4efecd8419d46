"""Token ownership: the normalized tables, their statistics, transfers and verification."""
