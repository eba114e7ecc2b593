"""Small tensor operations shared by networks, losses and notebooks."""
