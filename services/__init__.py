"""The cluster components: apiserver, scheduler, controllers, kubelet, proxy."""
