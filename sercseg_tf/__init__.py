"""sercseg_tf: DeepLabV3+ segmentation of oocyte, sERC and needle in ICSI videos."""

__version__ = "0.1.0"
