"""faultflow lab: a real kube-apiserver on loopback plus simulators for what cannot run here."""
