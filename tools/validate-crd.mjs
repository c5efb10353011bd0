#!/usr/bin/env node
// Validate KEDA and prometheus-operator custom resources in YAML files.
//
// Usage: node tools/validate-crd.mjs [--allow-unknown-fields] FILE.yaml...
//
// Every YAML document is loaded (the `yaml` package: duplicate keys and syntax errors
// are errors). Documents of a kind this tool knows are checked twice:
//   1. schema: the @kubernetes-models validators (the CRD OpenAPI schema compiled to
//      ajv code): required fields, types, enums, formats. They throw on invalid input.
//   2. unknown fields: the CRD schemas do not forbid extra keys (the API server prunes
//      them, and `kubectl apply` with its default strict field validation rejects them),
//      so every key is also looked up in the package's TypeScript interface for the kind
//      (TypeScript compiler API), which reports e.g. `spec.minReplicaCunt`.
//      `--allow-unknown-fields` skips this step.
// Other kinds are reported as "skipped (not a CRD this tool knows)".
//
// Output: `file:line: doc N Kind/name: message` per problem; a summary line per document
// on stderr. Exit status: 0 all known documents valid, 1 a document is invalid or a YAML
// document cannot be parsed, 2 usage / setup error.
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const TOOLS = dirname(fileURLToPath(import.meta.url));

// apiVersion -> kind -> module (class named like the kind, interface named I<kind>)
const KNOWN = {
  "keda.sh/v1alpha1": {
    ScaledObject: "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject",
    ScaledJob: "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledJob",
    TriggerAuthentication: "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication",
    ClusterTriggerAuthentication: "@kubernetes-models/keda/keda.sh/v1alpha1/ClusterTriggerAuthentication",
  },
  "monitoring.coreos.com/v1": {
    PrometheusRule: "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule",
    ServiceMonitor: "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor",
    PodMonitor: "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor",
  },
};

const args = process.argv.slice(2);
const allowUnknown = args.includes("--allow-unknown-fields");
const files = args.filter((a) => a !== "--allow-unknown-fields");
if (files.length === 0 || files.some((f) => f.startsWith("--"))) {
  console.error("usage: validate-crd.mjs [--allow-unknown-fields] FILE.yaml...");
  process.exit(2);
}

let YAML;
try {
  YAML = await import("yaml");
} catch {
  console.error("validate-crd: tools/node_modules is missing; run `make tools` (npm ci --prefix tools)");
  process.exit(2);
}

let status = 0;
const fail = (code) => { status = Math.max(status, code); };
const typeChecks = []; // documents for the tsc pass

for (const file of files) {
  let text;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    console.error(`${file}: cannot read: ${err.message}`);
    fail(2);
    continue;
  }
  const lineCounter = new YAML.LineCounter();
  const docs = YAML.parseAllDocuments(text, { lineCounter, prettyErrors: false });
  const list = Array.isArray(docs) ? docs : [docs];
  let n = 0;
  for (const doc of list) {
    n += 1;
    const startLine = lineCounter.linePos(doc.contents?.range?.[0] ?? doc.range?.[0] ?? 0).line;
    const where = `${file}:${startLine}: doc ${n}`;
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const l = e.pos ? lineCounter.linePos(e.pos[0]).line : startLine;
        console.log(`${file}:${l}: doc ${n}: YAML error: ${e.message.split("\n")[0]}`);
      }
      fail(1);
      continue;
    }
    const value = doc.toJS({ maxAliasCount: 1000 });
    if (value === null || value === undefined) continue; // empty document (e.g. trailing ---)
    if (typeof value !== "object" || Array.isArray(value)) {
      console.error(`${where}: skipped (not a Kubernetes object)`);
      continue;
    }
    const { apiVersion, kind } = value;
    const name = value.metadata?.name ?? "<no name>";
    const label = `${where} ${kind ?? "<no kind>"}/${name}`;
    const modPath = KNOWN[apiVersion]?.[kind];
    if (!modPath) {
      console.error(`${label}: skipped (not a CRD this tool knows: ${apiVersion ?? "<no apiVersion>"} ${kind ?? "<no kind>"})`);
      continue;
    }
    let Model;
    try {
      Model = (await import(modPath))[kind];
    } catch (err) {
      console.error(`validate-crd: cannot load ${modPath}: ${err.message}; run \`make tools\``);
      fail(2);
      continue;
    }
    let ok = true;
    try {
      new Model(value).validate();
    } catch (err) {
      ok = false;
      const errors = Array.isArray(err.errors) ? err.errors : null;
      if (errors && errors.length > 0) {
        for (const e of errors) {
          const path = e.instancePath ? e.instancePath.slice(1).split("/") : [];
          console.log(`${file}:${lineOf(doc, lineCounter, path, startLine)}: doc ${n} ${kind}/${name}: ${e.instancePath || "/"} ${e.message}`);
        }
      } else {
        console.log(`${label}: ${err.message}`);
      }
      fail(1);
    }
    if (!allowUnknown) {
      typeChecks.push({ file, n, kind, name, modPath, value, doc, lineCounter, startLine, schemaOk: ok });
    } else if (ok) {
      console.error(`${label}: ok`);
    }
  }
}

if (typeChecks.length > 0) {
  const bad = await runTypeCheck(typeChecks);
  for (const t of typeChecks) {
    if (t.schemaOk && !bad.has(t)) console.error(`${t.file}:${t.startLine}: doc ${t.n} ${t.kind}/${t.name}: ok`);
  }
}
process.exit(status);

// Line of the key at `path` (array of keys / indices) in a parsed YAML document.
function lineOf(doc, lineCounter, path, fallback) {
  try {
    if (path.length === 0) return fallback;
    const parent = path.length > 1 ? doc.getIn(path.slice(0, -1), true) : doc.contents;
    const last = path[path.length - 1];
    if (parent && Array.isArray(parent.items)) {
      if (YAML.isSeq(parent)) {
        const item = parent.items[Number(last)];
        if (item?.range) return lineCounter.linePos(item.range[0]).line;
      } else {
        const pair = parent.items.find((p) => p.key && String(p.key.value ?? p.key) === last);
        if (pair?.key?.range) return lineCounter.linePos(pair.key.range[0]).line;
      }
      if (parent.range) return lineCounter.linePos(parent.range[0]).line;
    }
  } catch {
    // fall through
  }
  return fallback;
}

// Find every key of a document that its TypeScript interface does not declare.
// Walks the value alongside the type with the TypeScript compiler API (no subprocess),
// so all unknown fields are reported, not only the first one per document.
async function runTypeCheck(items) {
  const bad = new Set();
  let ts;
  try {
    ts = (await import("typescript")).default;
  } catch {
    console.error("validate-crd: typescript is missing from tools/node_modules; run `make tools`");
    fail(2);
    return bad;
  }
  const virtual = join(TOOLS, "__validate_crd_types__.ts");
  const kinds = [...new Set(items.map((t) => t.modPath))];
  const source = kinds
    .map((m, i) => `import type { I${m.split("/").pop()} as T${i} } from ${JSON.stringify(m)}; export declare const v${i}: T${i};`)
    .join("\n");
  const options = {
    strict: true, skipLibCheck: true, noEmit: true, types: [],
    target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler,
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (f, ...rest) => (resolve(f) === virtual ? ts.createSourceFile(f, source, ts.ScriptTarget.ES2022, true) : getSourceFile.call(host, f, ...rest));
  host.fileExists = (f) => resolve(f) === virtual || fileExists.call(host, f);
  host.readFile = (f) => (resolve(f) === virtual ? source : readFile.call(host, f));
  const program = ts.createProgram([virtual], options, host);
  const diags = ts.getPreEmitDiagnostics(program).filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (diags.length > 0) {
    for (const d of diags) console.error(`validate-crd: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`);
    fail(2);
    return bad;
  }
  const checker = program.getTypeChecker();
  const sf = program.getSourceFile(virtual);
  const rootType = new Map();
  for (const stmt of sf.statements) {
    if (!ts.isVariableStatement(stmt)) continue;
    const decl = stmt.declarationList.declarations[0];
    rootType.set(kinds[Number(decl.name.text.slice(1))], checker.getTypeAtLocation(decl.name));
  }

  const OPEN = ts.TypeFlags.Any | ts.TypeFlags.Unknown;
  const members = (type) => (type.isUnion() ? type.types : [type]);
  const walk = (value, type, path, report) => {
    if (value === null || typeof value !== "object" || !type) return;
    const alts = members(type).filter((t) => !(t.flags & (ts.TypeFlags.Null | ts.TypeFlags.Undefined)));
    if (alts.length === 0 || alts.some((t) => t.flags & OPEN)) return;
    if (Array.isArray(value)) {
      const elem = alts.filter((t) => checker.isArrayType(t)).map((t) => checker.getTypeArguments(t)[0]);
      if (elem.length === 0) return; // type mismatch: the schema validator reports it
      value.forEach((x, i) => walk(x, elem[0], [...path, String(i)], report));
      return;
    }
    const objs = alts.filter((t) => t.flags & ts.TypeFlags.Object && !checker.isArrayType(t));
    if (objs.length === 0) return;
    for (const [key, x] of Object.entries(value)) {
      let propType;
      let known = false;
      for (const t of objs) {
        const prop = checker.getPropertyOfType(t, key);
        if (prop) { known = true; propType = checker.getTypeOfSymbol(prop); break; }
        const idx = checker.getIndexTypeOfType(t, ts.IndexKind.String);
        if (idx) { known = true; propType = idx; break; }
      }
      if (!known) report([...path, key]);
      else walk(x, propType, [...path, key], report);
    }
  };

  for (const t of items) {
    walk(t.value, rootType.get(t.modPath), [], (path) => {
      const line = lineOf(t.doc, t.lineCounter, path, t.startLine);
      console.log(`${t.file}:${line}: doc ${t.n} ${t.kind}/${t.name}: unknown field "${path.join(".")}" (not in the ${t.kind} schema)`);
      bad.add(t);
      fail(1);
    });
  }
  return bad;
}
