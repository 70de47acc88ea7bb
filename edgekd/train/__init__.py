"""Training: KD methods, the per-model trainer, and the distill stage that chains them."""
