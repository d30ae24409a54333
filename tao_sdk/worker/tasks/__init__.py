"""What the networks of one task share (data loading, metrics, inference outputs)."""
