"""FastFoundationStereo as TAO 7.3.0 builds it (``model.model_type: FastFoundationStereo``, the
distilled bp2 layout of NVIDIA's checkpoint), in plain PyTorch: one module per part.

- :mod:`.layers`: convolution units (conv / norm / LeakyReLU), factored 3D convolutions,
  residual blocks, feature gates, up-merge blocks;
- :mod:`.edgenext`: the EdgeNeXt image encoder;
- :mod:`.features`: encoder + decoder to 1/4, left stem, context heads, channel / spatial
  attention;
- :mod:`.volume`: cost volumes, soft-argmin, geometry look-up, convex up-sampling;
- :mod:`.aggregation`: the gated 3D hourglass and the disparity transformer;
- :mod:`.update`: motion encoder, selective ConvGRU, disparity head;
- :mod:`.model`: the network.

Imported only when a model is built (torch); :mod:`tao_sdk.worker.networks.depth_net` holds
the torch-free plugin.
"""
