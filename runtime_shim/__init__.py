"""The CRI runtime shim (runtime.v1) and its backends."""
