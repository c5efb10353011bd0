#!/usr/bin/env node
// Type-check Grafana dashboard JSON (classic JSON model, as provisioned from files)
// against the `Dashboard` type of @grafana/schema, using the TypeScript compiler.
//
// Usage: node tools/check-grafana.mjs DASHBOARD.json...
// Exit status: 0 all dashboards type-check, 1 a dashboard is invalid (tsc diagnostics
// printed as `file.json:line:col: error TSxxxx: message`), 2 usage / setup error.
//
// How: each JSON file is wrapped into a .ts module
//     import type { Dashboard } from "@grafana/schema"; ... const d: Loose<Dashboard> = <json>;
// and `tsc --noEmit --strict --skipLibCheck` runs once over all of them. The JSON is
// assigned as an object literal to an annotated constant (no `as` cast), so TypeScript's
// excess-property check reports unknown keys (e.g. "titel") as well as wrong types and
// missing required keys (e.g. a panel without "type").
//
// Loose<T> only turns string *enum* types (ThresholdsMode, FieldColorModeId, MappingType,
// ...) into the union of their string values, because JSON can only hold the string
// "absolute", never the enum member ThresholdsMode.Absolute. It keeps every object shape
// (and so excess-property checks) intact.
//
// Known limits: free-form places in the schema (panel `options`, `fieldConfig.defaults.custom`,
// `targets[]`) are Record<string, unknown> there, so plugin-specific keys are not checked.
// Dashboards exported "for sharing externally" (`__inputs`, `__requires`) are not the
// provisioning model and fail on those keys.
import { spawnSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const TOOLS = dirname(fileURLToPath(import.meta.url));
const TSC = join(TOOLS, "node_modules", "typescript", "bin", "tsc");

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: check-grafana.mjs DASHBOARD.json...");
  process.exit(2);
}
try {
  readFileSync(join(TOOLS, "node_modules", "@grafana", "schema", "package.json"));
  readFileSync(TSC);
} catch {
  console.error("check-grafana: tools/node_modules is missing typescript or @grafana/schema; run `make tools` (npm ci --prefix tools)");
  process.exit(2);
}

// Everything before the JSON text sits on the first line so that JSON line N is .ts line N.
const PREFIX =
  'import type { Dashboard } from "@grafana/schema"; ' +
  "type Loose<T> = T extends string ? `${T}` : T extends readonly (infer U)[] ? Loose<U>[] : " +
  "T extends object ? { [K in keyof T]: Loose<T[K]> } : T; " +
  "const dashboard: Loose<Dashboard> = ";
const SUFFIX = ";\nexport default dashboard;\n";

// A scratch dir inside tools/node_modules: ignored by git, and module resolution walks up
// from it to tools/node_modules where @grafana/schema lives.
const cacheDir = join(TOOLS, "node_modules", ".cache");
mkdirSync(cacheDir, { recursive: true });
const work = mkdtempSync(join(cacheDir, "check-grafana-"));

let status = 0;
try {
  const tsFiles = new Map(); // generated .ts path -> original json path
  files.forEach((file, i) => {
    let text;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      console.error(`${file}: cannot read: ${err.message}`);
      status = 2;
      return;
    }
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    let value;
    try {
      value = JSON.parse(text);
    } catch (err) {
      console.log(`${file}: error: not valid JSON: ${err.message}`);
      status = Math.max(status, 1);
      return;
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      console.log(`${file}: error: a dashboard must be a JSON object`);
      status = Math.max(status, 1);
      return;
    }
    const ts = join(work, `d${i}.ts`);
    writeFileSync(ts, PREFIX + text.replace(/\s+$/, "") + SUFFIX);
    tsFiles.set(ts, file);
  });

  if (tsFiles.size > 0) {
    const argv = [
      TSC, "--noEmit", "--strict", "--skipLibCheck", "--pretty", "false",
      "--target", "es2022", "--module", "esnext", "--moduleResolution", "bundler",
      ...tsFiles.keys(),
    ];
    const r = spawnSync(process.execPath, argv, { cwd: TOOLS, encoding: "utf8", maxBuffer: 64 << 20 });
    if (r.error) {
      console.error(`check-grafana: cannot run tsc: ${r.error.message}`);
      status = 2;
    } else {
      const out = `${r.stdout}${r.stderr}`;
      const bad = new Set();
      for (const line of out.split("\n")) {
        if (!line.trim()) continue;
        const m = /^(.*?)\((\d+),(\d+)\): (.*)$/.exec(line);
        const tsPath = m && [...tsFiles.keys()].find((p) => resolve(TOOLS, m[1]) === p);
        if (tsPath) {
          const lineNo = Number(m[2]);
          const col = lineNo === 1 ? Math.max(1, Number(m[3]) - PREFIX.length) : Number(m[3]);
          bad.add(tsPath);
          console.log(`${tsFiles.get(tsPath)}:${lineNo}:${col}: ${m[4]}`);
        } else {
          // continuation lines of a multi-line diagnostic, or a global tsc error
          let shown = line;
          for (const [tsP, orig] of tsFiles) shown = shown.split(tsP).join(orig);
          console.log(shown);
        }
      }
      if (r.status !== 0) {
        // No diagnostic tied to a dashboard: tsc itself failed (setup problem), not the input.
        status = Math.max(status, bad.size > 0 ? 1 : 2);
        if (bad.size === 0) console.error(`check-grafana: tsc exited with ${r.status}`);
      }
      // A failing tsc run with no diagnostic tied to a file says nothing about the files.
      if (r.status === 0 || bad.size > 0) {
        for (const [tsP, orig] of tsFiles) if (!bad.has(tsP)) console.error(`${orig}: ok`);
      }
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
process.exit(status);
