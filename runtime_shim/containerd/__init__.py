"""The containerd side of the runtime shim: a private daemon for tests and the (future) backend."""
