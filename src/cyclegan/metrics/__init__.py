"""Evaluation metrics: paired (L1, PSNR, SSIM), segmentation scores, FCN score, FID and KID.

`evaluate.evaluate` runs the metrics registered in `evaluate.py` (fields and rule: `registry.py`) that fit.

Modules are imported on use so that `import cyclegan` stays light; only `metrics.fid` needs the optional
`metrics` extra (torch-fidelity), and imports it inside its functions.
"""


class MetricError(ValueError):
    """Metrics that cannot be computed from what was given; the message says which files or what to install."""
