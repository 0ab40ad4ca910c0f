"""The Kubernetes API as the steps use it: the REST client, JSON patch, and readers of object fields."""
