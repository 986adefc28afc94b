"""The apiserver: the cluster's one entrance (REST + gRPC over registry, watch cache, storage)."""
