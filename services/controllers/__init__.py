"""The controller-manager and its controllers (one module each)."""
