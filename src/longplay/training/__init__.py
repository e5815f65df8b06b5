"""Training the three stages on PyTorch Lightning."""
