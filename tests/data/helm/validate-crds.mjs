// Validates prometheus-operator objects (ServiceMonitor, PodMonitor, PrometheusRule) against the
// CRD schemas compiled into @kubernetes-models/prometheus-operator (installed under .tools/ by
// scripts/install-helm.sh). Usage: node validate-crds.mjs TOOLS_DIR < objects.json
// Input: a JSON list of objects. Output: a JSON list of {kind, name, error} (error null when valid).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const tools = process.argv[2];
const objects = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const obj of objects) {
  const [group, version] = obj.apiVersion.split("/");
  const file = join(tools, "node_modules/@kubernetes-models/prometheus-operator", group, version, `${obj.kind}.js`);
  let error = null;
  try {
    const mod = await import(pathToFileURL(file).href);
    new mod[obj.kind](obj).validate();
  } catch (e) {
    error = String(e && e.message ? e.message : e);
  }
  results.push({ kind: obj.kind, name: obj.metadata && obj.metadata.name, error });
}
process.stdout.write(JSON.stringify(results));
