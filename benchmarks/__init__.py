"""GPU suite and kernel microbenchmarks: scripts run from the repository root, outside the package."""
