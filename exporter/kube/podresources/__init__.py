"""Exact GPU mapping from the kubelet's PodResources API (kubernetes.pod_resources, opt-in): which
GPU (or MIG slice) UUIDs each container on this node holds.

- devices.py: pure functions from a `List` answer to the GPU devices of each container, with
  device-plugin replica suffixes stripped. No gRPC import.
- client.py: the one `List` call over the kubelet's unix socket (the `podresources` extra: grpcio
  and protobuf, imported on first use), every failure a short reason.
- source.py: the source the Kubernetes pod refresh drives; keeps the last good mapping and reports
  llmcost_source_up{source="kubernetes", name="pod_resources"}.
- v1/: the kubelet's proto and its generated stubs.

See docs/kubernetes.md ("Exact GPU mapping").
"""
