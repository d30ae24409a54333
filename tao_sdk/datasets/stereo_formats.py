"""Stereo dataset formats (``data_sources[*].dataset_name``, case-insensitive) and the divisor of
their 16-bit PNG disparity (``Crestereo``: value / 32, the others value / 256; ``FSD`` PNGs are
8-bit RGB, ``(R*255*255 + G*255 + B) / 1000``). Shared by plan-time validation and the worker."""

FORMATS = {"fsd": 256.0, "isaacrealdataset": 256.0, "crestereo": 32.0, "middlebury": 256.0,
           "eth3d": 256.0, "kitti": 256.0, "genericdataset": 256.0}
