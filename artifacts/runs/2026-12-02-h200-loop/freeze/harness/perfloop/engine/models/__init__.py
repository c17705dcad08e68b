"""Model implementations the engine runs."""
