"""`catalog fetch-spot`: write a spot price file (exporter.spotprices) from public price data that
needs no cloud credentials, for the chart's CronJob or by hand.

Source: the Azure Retail Prices API (https://prices.azure.com/api/retail/prices, unauthenticated,
documented at https://learn.microsoft.com/rest/api/cost-management/retail-prices/azure-retail-prices).
A spot price is an item with `type` Consumption, `currencyCode` USD, `unitOfMeasure` "1 Hour", a
`skuName` ending in " Spot", and a Linux product (`productName` not ending in " Windows"). AWS's
spot prices come with credentials only (DescribeSpotPriceHistory; its website's feed is
undocumented) and Google's with an API key (Cloud Billing Catalog): for those, write the file
yourself in the same format.

With --configmap the output is a whole ConfigMap manifest holding the file, which the CronJob's
second container applies with `kubectl replace` (the only right its ServiceAccount has), so no
credentials and no Kubernetes client are needed here.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import urllib.parse
import urllib.request

import yaml

AZURE_RETAIL_PRICES = "https://prices.azure.com/api/retail/prices"
MAX_PAGES = 50  # a filtered query is a page or two; a runaway NextPageLink chain is cut here
MAX_PAGE_BYTES = 8 * 1024 * 1024
SPOT_FILE_KEY = "spot-prices.yaml"


class FetchError(Exception):
    """One line: what failed and why."""


def azure_query(skus, regions, base: str = AZURE_RETAIL_PRICES) -> str:
    """The first page's URL: the Linux and Windows, spot and regular meters of `skus` in `regions`."""
    def any_of(field: str, values) -> str:
        return "(" + " or ".join(f"{field} eq '{v}'" for v in values) + ")"
    flt = " and ".join(["serviceName eq 'Virtual Machines'", "priceType eq 'Consumption'", any_of("armSkuName", skus),
                        any_of("armRegionName", regions)])
    return f"{base}?{urllib.parse.urlencode({'$filter': flt}, quote_via=urllib.parse.quote)}"


def is_linux_spot(item: dict) -> bool:
    return (item.get("type") == "Consumption" and item.get("currencyCode") == "USD"
            and item.get("unitOfMeasure") == "1 Hour" and str(item.get("skuName", "")).endswith(" Spot")
            and not str(item.get("productName", "")).endswith(" Windows")
            and isinstance(item.get("retailPrice"), (int, float)) and item["retailPrice"] > 0)


def azure_spot_prices(pages, checked: str, source: str = AZURE_RETAIL_PRICES) -> list[dict]:
    """Spot file entries from the API's pages (dicts with `Items`), one per SKU and region."""
    prices: dict[tuple[str, str], dict] = {}
    for page in pages:
        for item in page.get("Items") or []:
            if isinstance(item, dict) and is_linux_spot(item):
                key = (str(item["armSkuName"]), str(item["armRegionName"]))
                prices.setdefault(key, {"provider": "azure", "instance_type": key[0], "region": key[1],
                                        "spot_hourly": float(item["retailPrice"]), "checked": checked,
                                        "source": source})
    return [prices[k] for k in sorted(prices)]


def fetch_pages(url: str, timeout: float = 30.0):
    """Every page from `url`, following NextPageLink on the same host."""
    host = urllib.parse.urlsplit(url).hostname
    for _ in range(MAX_PAGES):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (an http(s) URL we built)
                page = json.loads(response.read(MAX_PAGE_BYTES + 1)[:MAX_PAGE_BYTES])
        except (OSError, ValueError) as err:
            raise FetchError(f"{url}: {err}") from None
        yield page
        url = page.get("NextPageLink") or ""
        if not url:
            return
        if urllib.parse.urlsplit(url).hostname != host:
            raise FetchError(f"NextPageLink leaves {host}: {url}")
    raise FetchError(f"more than {MAX_PAGES} pages")


def spot_file(prices: list[dict], now: datetime.datetime) -> str:
    return yaml.safe_dump({"generated": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "prices": prices}, sort_keys=False)


def configmap(name: str, namespace: str, text: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": name, "namespace": namespace},
                           "data": {SPOT_FILE_KEY: text}}, sort_keys=False)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="llm-cost-exporter catalog fetch-spot", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--azure-sku", action="append", required=True, help="an Azure VM size, e.g. Standard_NC24ads_A100_v4 (repeat)")
    parser.add_argument("--azure-region", action="append", required=True, help="an Azure region, e.g. eastus (repeat)")
    parser.add_argument("--url", default=AZURE_RETAIL_PRICES, help="the Retail Prices API endpoint")
    parser.add_argument("--output", default="-", help="where to write the spot file (- for stdout)")
    parser.add_argument("--configmap", default=None, metavar="NAMESPACE/NAME",
                        help=f"write a ConfigMap manifest holding the file as {SPOT_FILE_KEY} instead")
    args = parser.parse_args(argv)
    now = datetime.datetime.now(datetime.timezone.utc)
    try:
        prices = azure_spot_prices(fetch_pages(azure_query(args.azure_sku, args.azure_region, args.url)),
                                   now.date().isoformat(), args.url)
    except FetchError as err:
        print(f"fetch-spot: {err}", file=sys.stderr)
        return 1
    text = spot_file(prices, now)
    if args.configmap:
        namespace, _, name = args.configmap.rpartition("/")
        text = configmap(name, namespace or "default", text)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    print(f"fetch-spot: {len(prices)} spot prices", file=sys.stderr)
    return 0
