"""Network plugins: one module per network (``<name>.py`` defines ``PLUGIN``), registered in
:data:`tao_sdk.worker.registry.REGISTRY`. Modules starting with ``_`` hold what a family of
plugins shares (``_detr``: the DETR-family detectors)."""
