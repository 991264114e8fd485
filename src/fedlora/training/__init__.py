"""What a client computes: local LoRA training and evaluation on one shared frozen base model."""
