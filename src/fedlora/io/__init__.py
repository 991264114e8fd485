"""What crosses a disk: run directories, events, checkpoints (tensors as safetensors, metadata as JSON)."""
