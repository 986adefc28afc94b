"""The kubelet: the node agent that makes pods real (see README.md)."""
