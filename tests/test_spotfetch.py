"""`catalog fetch-spot` against a real HTTP server serving the Azure Retail Prices API's own samples
(tests/data/spot/README.md): the pages are followed, only Linux pay-as-you-go USD spot meters are
taken, and the output is a spot file the exporter loads (or a ConfigMap holding one)."""

import json
import pathlib
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from exporter import spotprices
from exporter.spotfetch import SPOT_FILE_KEY

DATA = pathlib.Path(__file__).parent / "data" / "spot"
ROOT = pathlib.Path(__file__).parent.parent


@pytest.fixture()
def retail_api():
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            requests.append(self.path)
            base = f"http://127.0.0.1:{self.server.server_address[1]}/api/retail/prices"
            if "$skip=100" in self.path:
                body = (DATA / "azure-retail-prices-linux-variant.json").read_bytes()
            else:
                body = (DATA / "azure-retail-prices-docs-page.json").read_bytes().replace(
                    b'"NEXT_PAGE"', json.dumps(base + "?$skip=100").encode())
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/retail/prices", requests
    server.shutdown()


def fetch(url, *extra):
    return subprocess.run([sys.executable, "-m", "exporter", "catalog", "fetch-spot", "--azure-sku", "Standard_F16s",
                           "--azure-region", "westeurope", f"--url={url}", *extra],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_fetch_spot_takes_linux_usd_spot_meters_only_and_writes_a_loadable_file(retail_api, tmp_path):
    url, requests = retail_api
    out = tmp_path / "spot-prices.yaml"
    result = fetch(url, f"--output={out}")
    assert result.returncode == 0, result.stderr
    filter_text = urllib.parse.unquote(requests[0])
    assert "armSkuName eq 'Standard_F16s'" in filter_text and "armRegionName eq 'westeurope'" in filter_text
    assert len(requests) == 2  # NextPageLink followed
    (price,) = spotprices.load(str(out))
    assert (price.instance_type, price.region, price.spot_hourly, price.provider) == \
        ("Standard_F16s", "westeurope", 0.1298, "azure")


def test_fetch_spot_as_a_configmap_manifest(retail_api):
    url, _ = retail_api
    result = fetch(url, "--configmap=monitoring/llmcost-spot-prices")
    assert result.returncode == 0, result.stderr
    manifest = yaml.safe_load(result.stdout)
    assert manifest["kind"] == "ConfigMap" and manifest["metadata"] == {"name": "llmcost-spot-prices",
                                                                        "namespace": "monitoring"}
    assert yaml.safe_load(manifest["data"][SPOT_FILE_KEY])["prices"][0]["spot_hourly"] == 0.1298


def test_fetch_spot_unreachable_api_is_one_line_and_exit_1():
    result = fetch("http://127.0.0.1:9/api/retail/prices")
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
