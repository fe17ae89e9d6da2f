"""Kubernetes integration: the node's labels (instance price, llmcost_node_info) and the engine pods
running on this node (discovery).

Nothing here imports the `kubernetes` client at module level: client.py imports it on first use
(about 46 MiB and 0.2 s), so an exporter without Kubernetes features never loads it. node.py and
discovery.py are pure functions over the API server's JSON. See docs/kubernetes.md.
"""
