"""The PyTorch adapter: pruning, weight sharing, training and export of nn.Modules."""
