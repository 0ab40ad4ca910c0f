"""The GPU side: the XID catalogue, the kernel-log line, the node toggle, NVSentinel's contract, PCI ids,
watching the node, and the pods that reach a node's host paths."""
