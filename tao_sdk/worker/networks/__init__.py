"""Network plugins of the worker (one module per network)."""
