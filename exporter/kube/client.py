"""The API calls the exporter makes (read its Node, list pods on its node, find a Ray head, read an
engine pod's Namespace for its tier annotation), each one GET that
ends within `kubernetes.timeout` whatever the API server does (exporter.deadline_http).

The official `kubernetes` package (imported on first use) only resolves where and how to talk:
in-cluster service account (the token re-read as it rotates, through the configuration's
refresh hook, on every call), a kubeconfig, or `api_url`. Its own transport (urllib3) is not used:
its timeout bounds each socket read, not the request, so a dripping API server could hold a call,
and with it the exporter's start, for as long as it liked. Bodies are read as raw JSON, not
deserialised into models. Every failure becomes KubeError with a short, bounded `reason` for
llmcost_source_errors_total.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

from exporter import deadline_http
from exporter.config import KubernetesConfig

# HTTP status -> reason; others: http_status
_STATUS_REASONS = {401: "unauthorized", 403: "forbidden", 404: "not_found"}
# A PodList of one node (at most a few hundred pods, managed fields included) is a few MiB.
MAX_BODY_BYTES = 32 * 1024 * 1024
_HEADERS = {"Accept": "application/json", "User-Agent": "llm-cost-exporter"}


class KubeError(Exception):
    def __init__(self, reason: str, detail: str):
        self.reason = reason
        super().__init__(detail)


@dataclass(frozen=True)
class _Endpoint:
    base_url: str  # the API server's URL, a path prefix included (a proxy's /k8s/clusters/c-1)
    ssl_context: ssl.SSLContext | None
    server_hostname: str | None
    configuration: Any  # kubernetes.client.Configuration: asked for the auth headers on every call


class KubeClient:
    def __init__(self, config: KubernetesConfig):
        self._config = config
        self._endpoint: _Endpoint | None = None

    def read_node(self, name: str) -> dict:
        return self._get(f"/api/v1/nodes/{urllib.parse.quote(name, safe='')}")

    def read_namespace(self, name: str) -> dict:
        return self._get(f"/api/v1/namespaces/{urllib.parse.quote(name, safe='')}")

    def list_pods(self, node_name: str | None, label_selector: str, namespace: str | None) -> dict:
        """The pods on `node_name` (None: on any node, for a Ray head, exporter.kube.groups)."""
        query = {"fieldSelector": f"spec.nodeName={node_name}"} if node_name else {}
        if label_selector:
            query["labelSelector"] = label_selector
        path = f"/api/v1/namespaces/{urllib.parse.quote(namespace, safe='')}/pods" if namespace else "/api/v1/pods"
        return self._get(f"{path}?{urllib.parse.urlencode(query)}")

    def _get(self, path: str) -> dict:
        endpoint = self._resolve()
        timeout = self._config.timeout
        try:
            response = deadline_http.get(endpoint.base_url + path, timeout, MAX_BODY_BYTES,
                                         {**_HEADERS, **_auth_headers(endpoint.configuration)},
                                         endpoint.ssl_context, endpoint.server_hostname)
        except TimeoutError:  # the deadline, whatever the step: connect, TLS, head, body
            raise KubeError("timeout", f"no complete answer from the API server within {timeout:g}s") from None
        except deadline_http.BodyTooLargeError as err:
            raise KubeError("too_large", f"API server: {err}") from None
        except (OSError, ValueError) as err:
            raise KubeError("connection", f"cannot talk to the API server: {err}"[:300]) from None
        except http.client.HTTPException as err:
            raise KubeError("connection", f"API server: not a valid HTTP response: {type(err).__name__}") from None
        if not response.ok:
            raise KubeError(_STATUS_REASONS.get(response.status, "http_status"),
                            f"HTTP {response.status}: {_status_message(response.body) or response.reason}")
        try:
            return json.loads(response.body)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the parser's depth
            raise KubeError("parse", "the API server's answer is not JSON") from None

    def _resolve(self) -> _Endpoint:
        """Where and how to talk, resolved once (a failure is retried on the next call)."""
        if self._endpoint is None:
            configuration = _configuration(self._config)
            if configuration.proxy:
                raise KubeError("config", "the kubeconfig's proxy-url is not supported: reach the API server "
                                          "directly or through api_url (kubectl proxy)")
            https = configuration.host.startswith("https://")
            try:
                context = _ssl_context(configuration) if https else None
            except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
                raise KubeError("config", f"the API server's TLS settings: {err}") from None
            self._endpoint = _Endpoint(configuration.host.rstrip("/"), context,
                                       configuration.tls_server_name or None, configuration)
        return self._endpoint


def _configuration(config: KubernetesConfig):
    import kubernetes.client  # lazily: only exporters with Kubernetes features load it
    import kubernetes.config

    configuration = kubernetes.client.Configuration()
    try:
        if config.api_url:
            configuration.host = config.api_url.rstrip("/")
        elif config.kubeconfig:
            kubernetes.config.load_kube_config(config_file=config.kubeconfig, client_configuration=configuration)
        else:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
    except (kubernetes.config.ConfigException, OSError) as err:
        raise KubeError("config", f"no Kubernetes API configuration: {err}") from None
    return configuration


def _ssl_context(configuration) -> ssl.SSLContext:
    """As the client's own transport builds it: the CA, the client certificate, verify_ssl."""
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert,
                                         cadata=getattr(configuration, "ca_cert_data", None))
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    if not configuration.verify_ssl or configuration.assert_hostname is False:
        context.check_hostname = False
    if not configuration.verify_ssl:
        context.verify_mode = ssl.CERT_NONE
    return context


def _auth_headers(configuration) -> dict[str, str]:
    """The Authorization header (a bearer token, refreshed by the configuration's hook, or basic)."""
    try:
        settings = configuration.auth_settings()
    except Exception as err:  # noqa: BLE001 - a token file gone, an exec plugin failing: a config fault
        raise KubeError("config", f"no Kubernetes API credentials: {type(err).__name__}: {err}"[:300]) from None
    return {s["key"]: s["value"] for s in settings.values() if s.get("in") == "header" and s.get("value")}


def _status_message(body: bytes) -> str:
    """The `message` of a v1 Status body (what the API server says went wrong)."""
    try:
        status = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    return str(status.get("message", "")) if isinstance(status, dict) else ""
