"""The kubelet PodResources v1 API, generated from its proto (README.md here). Never edited."""
