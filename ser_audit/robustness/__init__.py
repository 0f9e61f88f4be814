"""Adversarial robustness: FGSM and PGD probes (P2), their evaluation, and adversarial training."""
