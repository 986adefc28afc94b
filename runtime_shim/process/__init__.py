"""The process backend: pod sandboxes as namespaces, containers as supervised processes."""
