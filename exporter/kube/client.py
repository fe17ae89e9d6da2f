"""The two API calls the exporter makes (read its Node, list pods on its node), through the
official `kubernetes` client, imported on first use.

Bodies are read as raw JSON (`_preload_content=False`): the client still builds the request,
authenticates (in-cluster service account with token refresh, or a kubeconfig) and raises on
non-2xx, but the exporter does not pay for deserialising every field of every pod into models.
Every failure becomes KubeError with a short, bounded `reason` for llmcost_source_errors_total.
"""

from __future__ import annotations

import json
import logging

from exporter.config import KubernetesConfig

log = logging.getLogger("exporter.kube")

# HTTP status -> reason; others: http_status
_STATUS_REASONS = {401: "unauthorized", 403: "forbidden", 404: "not_found"}


class KubeError(Exception):
    def __init__(self, reason: str, detail: str):
        self.reason = reason
        super().__init__(detail)


class KubeClient:
    def __init__(self, config: KubernetesConfig):
        self._config = config
        self._core = None

    def read_node(self, name: str) -> dict:
        return self._call(lambda core, **kw: core.read_node(name, **kw))

    def list_pods(self, node_name: str, label_selector: str, namespace: str | None) -> dict:
        selectors = dict(field_selector=f"spec.nodeName={node_name}", label_selector=label_selector)
        if namespace:
            return self._call(lambda core, **kw: core.list_namespaced_pod(namespace, **selectors, **kw))
        return self._call(lambda core, **kw: core.list_pod_for_all_namespaces(**selectors, **kw))

    def _api(self):
        if self._core is None:
            import kubernetes.client  # lazily: only exporters with Kubernetes features load it
            import kubernetes.config

            configuration = kubernetes.client.Configuration()
            try:
                if self._config.api_url:
                    configuration.host = self._config.api_url.rstrip("/")
                elif self._config.kubeconfig:
                    kubernetes.config.load_kube_config(config_file=self._config.kubeconfig,
                                                       client_configuration=configuration)
                else:
                    kubernetes.config.load_incluster_config(client_configuration=configuration)
            except (kubernetes.config.ConfigException, OSError) as err:
                raise KubeError("config", f"no Kubernetes API configuration: {err}") from None
            configuration.retries = False  # one attempt per refresh: the next refresh is the retry
            self._core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))
        return self._core

    def _call(self, request) -> dict:
        import urllib3.exceptions
        from kubernetes.client.exceptions import ApiException

        core = self._api()
        timeout = self._config.timeout
        try:
            response = request(core, _preload_content=False, _request_timeout=timeout)
            try:
                body = response.data
            finally:
                response.release_conn()
        except ApiException as err:
            raise KubeError(_STATUS_REASONS.get(err.status, "http_status"),
                            f"HTTP {err.status}: {_status_message(err.body) or err.reason}") from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            cause: Exception = err.reason if isinstance(err, urllib3.exceptions.MaxRetryError) and err.reason else err
            if isinstance(cause, urllib3.exceptions.NewConnectionError):  # a subclass of the timeouts
                raise KubeError("connection", f"cannot connect to the API server: {cause}") from None
            if isinstance(cause, (urllib3.exceptions.TimeoutError, TimeoutError)):
                raise KubeError("timeout", f"no answer from the API server within {timeout:g}s") from None
            raise KubeError("connection", f"API server: {cause}") from None
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise KubeError("parse", "the API server's answer is not JSON") from None


def _status_message(body) -> str:
    """The `message` of a v1 Status body (what the API server says went wrong)."""
    try:
        status = json.loads(body)
    except (TypeError, ValueError):
        return ""
    return str(status.get("message", "")) if isinstance(status, dict) else ""
