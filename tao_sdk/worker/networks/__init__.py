"""Network modules of the worker (one module per TAO network)."""
