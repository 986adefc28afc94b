"""pilothouse: the Kubernetes architecture, real and readable, in Python."""

__version__ = "0.1.0"

# The Kubernetes API level this release implements (kubectl picks its
# behaviour from /version).
KUBERNETES_VERSION = "v1.32.4"
