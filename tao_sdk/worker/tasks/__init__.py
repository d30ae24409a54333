"""Per-task code shared by the networks of a task (datasets, metrics, inference outputs)."""
