"""Reference networks: the notebook CNN, LeNet-300-100 and LeNet-5."""
