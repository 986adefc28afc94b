"""Shared client machinery: typed client, informers, work queues, leader election."""
