"""Evaluation metrics: paired (L1, PSNR, SSIM), segmentation scores, FID and KID; `evaluate` picks what fits.

Modules are imported on use so that `import cyclegan` stays light; only `metrics.fid` needs the optional
`metrics` extra (torch-fidelity), and imports it inside its functions.
"""


class MetricError(ValueError):
    """Metrics that cannot be computed from what was given; the message says which files or what to install."""
