"""Where each part of the ``pilothouse`` namespace lives in the repository."""

PACKAGE_DIRS: dict[str, str] = {
    "pilothouse": "pilothouse",
    "pilothouse.services": "services",
    "pilothouse.runtime_shim": "runtime_shim",
    "pilothouse.cloud_controller": "cloud_controller",
}
