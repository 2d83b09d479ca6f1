"""What a trial reports, by name (one list for the engine, the sweep and the analysis), and the
plain-words verdict on whether its latents carry anything."""

from __future__ import annotations

import math

EPOCH = (
    "epoch",
    "neg_elbo",
    "neg_elbo_per_datapoint",
    "loglik",
    "kl_z",
    "kl_z_per_datapoint",  # KL(q(z_n) || p(z_n)) per image: near 0 when the latents collapsed
    "kl_theta",
    "epoch_lr",
    "train_mse",
    "test_mse",
    "active_dims",  # latent dimensions with Cov_x(E_q[z_d]) > 0.01 (Burda et al. 2016)
    "mean_image_mse",  # the 'latents unused' floor of these training images
    "opt_seconds",
    "eval_seconds",
    "epochs_to_threshold",
    "seconds_to_threshold",
)
INFERENCE = ("infer_seconds", "infer_steps", "infer_elbo_per_datapoint")  # at the end, test-time q
REPORTED = (*EPOCH, *INFERENCE, "torch_threads")
# a split's summary in gap.json (``gap.gap_of_split``; "refine" and "points" besides when asked for):
# each mean over the images with its standard error ("_se"), the IWAE's Monte Carlo error, q*'s cost
GAP_KEYS = (
    "n",
    "elbo_q",
    "elbo_q_se",
    "elbo_qstar",
    "elbo_qstar_se",
    "log_px",
    "log_px_se",
    "log_px_mc_se",
    "amortization_gap",
    "amortization_gap_se",
    "approximation_gap",
    "approximation_gap_se",
    "qstar_steps",
    "qstar_seconds",
)
UNUSED_TOLERANCE = 0.03  # a train MSE within 3% of the mean image's: the decoder ignores z


def latents_unused(train_mse, mean_image_mse, active_dims) -> str | None:
    """'latents unused: ...' when the train MSE sits at the mean-image level or no latent dimension
    is active; None when the latents are used or nothing was measured yet."""
    def known(v) -> bool:
        return v is not None and not (isinstance(v, float) and math.isnan(v))

    if known(train_mse) and known(mean_image_mse) and abs(train_mse / mean_image_mse - 1) <= UNUSED_TOLERANCE:
        return f"latents unused: MSE at the mean-image level {mean_image_mse:.3f}"
    if known(active_dims) and active_dims == 0:
        return "latents unused: no active latent dimension"
    return None
