// Builds the softphone into dist/, which the Go package embeds:
//   app-HASH.js     src/main.js and JsSIP, bundled and minified
//   style-HASH.css  src/style.css, minified
//   index.html      src/index.html pointing at the two
//   THIRD_PARTY_LICENSES.txt  the licences of the npm packages bundled
// The hash in a name changes with the content, so the gateway can let
// browsers cache those files for good. SOURCEMAP=1 adds app-HASH.js.map.
//
// Usage: node build.mjs (npm run build)

import { readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = path.dirname(fileURLToPath(import.meta.url));
const src = path.join(root, 'src');
const dist = path.join(root, 'dist');
const KEEP = new Set(['.placeholder']); // committed: lets go build work without a bundle

for (const name of await readdir(dist)) {
  if (!KEEP.has(name)) await rm(path.join(dist, name), { recursive: true, force: true });
}

const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: { app: path.join(src, 'main.js'), style: path.join(src, 'style.css') },
  outdir: dist,
  entryNames: '[name]-[hash]',
  bundle: true,
  minify: true,
  format: 'esm',
  platform: 'browser',
  target: ['chrome109', 'edge109', 'firefox115', 'safari16'],
  sourcemap: process.env.SOURCEMAP === '1' ? 'linked' : false,
  legalComments: 'none', // collected into THIRD_PARTY_LICENSES.txt instead
  metafile: true,
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' },
});

// Map each entry point to the file it became.
const outputs = {};
for (const [file, out] of Object.entries(result.metafile.outputs)) {
  if (!out.entryPoint) continue;
  const key = path.basename(out.entryPoint) === 'main.js' ? 'app.js' : 'style.css';
  outputs[key] = path.basename(file);
}
let html = await readFile(path.join(src, 'index.html'), 'utf8');
html = html.replace(/\{\{(app\.js|style\.css)\}\}/g, (_, key) => {
  if (!outputs[key]) throw new Error(`build: no output for ${key}`);
  return outputs[key];
});
await writeFile(path.join(dist, 'index.html'), html);

// The licences of every npm package that went into the bundle.
const packages = new Set();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = input.match(/(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (m) packages.add(m[1]);
}
const sections = [];
for (const name of [...packages].sort()) {
  const dir = path.join(root, 'node_modules', name);
  const pkg = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8'));
  const licenseFile = (await readdir(dir)).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f));
  const body = licenseFile
    ? await readFile(path.join(dir, licenseFile), 'utf8')
    : `License: ${pkg.license || 'see the package'}`;
  sections.push(`${pkg.name} ${pkg.version}\n${'='.repeat(40)}\n${body.trim()}\n`);
}
await writeFile(
  path.join(dist, 'THIRD_PARTY_LICENSES.txt'),
  `The softphone bundles these npm packages:\n\n${sections.join('\n')}`,
);

const files = (await readdir(dist)).filter((f) => !KEEP.has(f)).sort();
let total = 0;
for (const f of files) {
  const size = (await readFile(path.join(dist, f))).length;
  total += size;
  console.log(`  dist/${f}  ${(size / 1024).toFixed(1)} KiB`);
}
console.log(`built ${files.length} files, ${(total / 1024).toFixed(1)} KiB, bundling ${[...packages].sort().join(', ')}`);
if (!existsSync(path.join(dist, '.placeholder'))) {
  console.warn('build: dist/.placeholder is missing; restore it (git checkout webclient/dist/.placeholder)');
}
