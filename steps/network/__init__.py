"""Network faults: pod selectors, NetworkPolicy partitions, Chaos Mesh degradations, their objects and checks."""
