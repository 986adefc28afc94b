"""The scheduler: Kubernetes' scheduling framework, its in-tree plugins, the queue and the process.

See README.md in this folder.
"""
