"""Storage: an etcd-shaped protocol and its backends (SQLite embedded, etcd v3)."""
