#!/usr/bin/env node
// Validate AsyncAPI documents with the official parser (@asyncapi/parser: the AsyncAPI JSON Schemas of
// @asyncapi/specs plus the spec's own rules, e.g. that every $ref resolves and operation ids are unique).
// Usage: NODE_PATH=<dir>/node_modules node tools/asyncapi/validate.cjs FILE...  (tools/tools.d/asyncapi.sh
// installs the parser and prints the NODE_PATH). Exit 0 when every document is valid with no warning;
// 1 otherwise, with each diagnostic on stderr. Works offline (no remote $ref is followed).
'use strict';
const fs = require('fs');
const { Parser, DiagnosticSeverity } = require('@asyncapi/parser');

async function main(files) {
  if (files.length === 0) {
    console.error('usage: validate.cjs FILE...');
    return 2;
  }
  const parser = new Parser();
  let failed = false;
  for (const file of files) {
    const diagnostics = await parser.validate(fs.readFileSync(file, 'utf8'), { source: file });
    const shown = diagnostics.filter((d) => d.severity <= DiagnosticSeverity.Warning);
    for (const d of shown) {
      const where = d.path && d.path.length ? d.path.join('.') : '<document>';
      const level = d.severity === DiagnosticSeverity.Error ? 'error' : 'warning';
      console.error(`${file}: ${level} ${d.code} at ${where}: ${d.message}`);
    }
    if (shown.length) failed = true;
    else console.log(`${file}: valid (${diagnostics.length} hint(s) below warning level)`);
  }
  return failed ? 1 : 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(2);
});
