"""Local OCI images: build, store, import, pull; the CRI ImageService over them."""
