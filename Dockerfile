# syntax=docker/dockerfile:1
# The llm-cost-exporter image (docs/helm.md, "Image"):
#   docker build -t ghcr.io/llm-cost-exporter/llm-cost-exporter:$(python3 -c 'import exporter; print(exporter.__version__)') .
# Stage 1 builds wheels of the project and its dependencies; stage 2 installs them into a slim
# Python image with no compiler, no pip cache and no wheels left behind, and runs as a numeric
# non-root user (Kubernetes can check runAsNonRoot only against a numeric USER).
# NVML (libnvidia-ml.so.1) is not in the image: the NVIDIA container runtime mounts the node's.

ARG PYTHON_VERSION=3.12
# The extras the chart's features need: kubernetes (node-label pricing, discovery; on by default)
# and podresources (podResources.enabled). Each is imported only when its feature is on.
ARG EXTRAS=kubernetes,podresources

FROM python:${PYTHON_VERSION}-slim AS build
ARG EXTRAS
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
# Every dependency has a pure-Python or manylinux wheel (grpcio and protobuf too), so nothing is
# compiled here either.
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels ".[${EXTRAS}]"

FROM python:${PYTHON_VERSION}-slim
ARG EXTRAS
LABEL org.opencontainers.image.title="llm-cost-exporter" \
      org.opencontainers.image.description="Prometheus exporter: the real cost per 1M tokens of self-hosted LLMs against API prices" \
      org.opencontainers.image.source="https://github.com/llm-cost-exporter/llm-cost-exporter" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NVIDIA_DRIVER_CAPABILITIES=utility
# The wheels are bind-mounted from the build stage for this step only, so no layer keeps them.
# Byte-compiled at install (no --no-compile): the root filesystem is read-only at run time, so
# without .pyc files every start compiles from source, and compiling the kubernetes client's
# 4.4 MB core_v1_api.py alone leaves RSS at 138 MiB instead of 77 and adds 1.2 s to startup
# (bench/README.md, overhead).
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links=/wheels "llm-cost-exporter[${EXTRAS}]" \
    && llm-cost-exporter --version
USER 65532:65532
EXPOSE 9848
# No HEALTHCHECK: Kubernetes ignores it (the chart probes GET /healthz), and with a TLS web
# configuration a plain-HTTP check would fail.
ENTRYPOINT ["llm-cost-exporter"]
CMD ["run", "--web.listen-address=:9848"]
