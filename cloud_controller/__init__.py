"""cloud-controller-manager and the cloud provider plugin interface."""
