// Bundles the console: src/main.js (and the CSS it imports) into one
// console.js and one console.css. Usage: node build.mjs [OUTDIR] (default dist).
import { build } from "esbuild";
import { mkdirSync } from "node:fs";
import { resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const outdir = resolve(process.argv[2] || resolve(here, "dist"));
mkdirSync(outdir, { recursive: true });
const result = await build({
  absWorkingDir: here,
  entryPoints: { console: "src/main.js" },
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2020"],
  outdir,
  legalComments: "none",
  metafile: true,
  logLevel: "warning",
});
for (const [file, info] of Object.entries(result.metafile.outputs)) {
  console.log(`${file} ${info.bytes} bytes`);
}
