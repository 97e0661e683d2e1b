/* global process, console */
/**
 * Build step after tsc: the CLI's own code (dist/agent/cli.js and every module
 * it imports, statically or lazily) in one CommonJS file, dist/vdbak.cjs, which
 * bin/vdbak.js loads with a V8 code cache.
 *
 * Why: a single-file restore is mostly process start-up (issue 5 §5, ≤ 100 ms).
 * Node 20 keeps no compiled code for ES modules between runs, and reads each
 * one through the thread pool, one import level at a time; one script with a
 * code cache skips both (benchmarks/README.md has the figures).
 *
 * What stays outside: every npm dependency but better-sqlite3's JavaScript
 * (its native addon is named by path, catalog/sqlite-addon.ts), so workers,
 * WebAssembly and packages that find files next to themselves work as from
 * dist/; piscina workers still run dist/agent/backup/worker.js. Each bundled
 * module's `import.meta.url` is the URL of its own file in dist/, so paths
 * computed from it (the worker file, package.json, createRequire) are the same
 * as when dist/ runs unbundled.
 *
 * bin/vdbak.js runs the bundle only when it is newer than dist/agent/cli.js, so
 * a tsc run without this step never leaves a stale bundle in charge.
 *
 * Usage: node scripts/bundle-cli.js   (after `tsc -p tsconfig.build.json`)
 */
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DIST = join(ROOT, 'dist');
const ENTRY = join(DIST, 'agent', 'cli.js');
const OUT = join(DIST, 'vdbak.cjs');
/** Written last: names the bundle's content, so a code cache is never used for other code. */
const STAMP = join(DIST, 'vdbak.json');
/** Bundled although a dependency: plain CommonJS whose 15 files were otherwise looked up and read one by one at every start. */
const BUNDLED_DEPENDENCIES = new Set(['better-sqlite3']);

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
/** `bindings` is better-sqlite3's own addon search (used only when no path is given): it must run from node_modules. */
const external = [
  ...Object.keys(pkg.dependencies ?? {}).filter((d) => !BUNDLED_DEPENDENCIES.has(d)),
  'bindings',
  'better-sqlite3/package.json',
];

/** Defined once at the top of the bundle, where `require` and `__dirname` are the bundle's own. */
const FILE_URL = '__vdbakFileUrl';
const BANNER = `var ${FILE_URL} = (rel) => require('node:url').pathToFileURL(require('node:path').join(__dirname, rel)).href;`;

/**
 * Rewrites `import.meta.url` in each module of dist/ to its own file's URL, computed from the
 * bundle's folder. (A call to a banner function: a module may have a local named `require`.)
 */
const ownUrls = {
  name: 'own-import-meta-url',
  setup(b) {
    b.onLoad({ filter: /\.js$/ }, (args) => {
      if (!args.path.startsWith(DIST + sep)) return undefined;
      const text = readFileSync(args.path, 'utf8');
      if (!text.includes('import.meta.url')) return { contents: text, loader: 'js' };
      const rel = relative(DIST, args.path).split(sep).join('/');
      return { contents: text.replaceAll('import.meta.url', `${FILE_URL}(${JSON.stringify(rel)})`), loader: 'js' };
    });
  },
};

/**
 * better-sqlite3 finds its addon through `bindings`, which searches from the folder of the file
 * that calls it: inside the bundle that is dist/, not the package. Its call is routed through
 * this module, which gives `bindings` the package's own folder: the same search as unbundled,
 * for every `new Database()` that names no addon itself.
 */
const BINDINGS_SHIM = `
const { dirname } = require('node:path');
const bindings = require('bindings');
module.exports = (name) =>
  bindings({ bindings: name, module_root: dirname(require.resolve('better-sqlite3/package.json')) });
`;
const sqliteBindings = {
  name: 'better-sqlite3-bindings',
  setup(b) {
    b.onResolve({ filter: /^bindings$/ }, (args) =>
      args.importer.includes(`${sep}node_modules${sep}better-sqlite3${sep}`)
        ? { path: 'better-sqlite3-bindings', namespace: 'vdbak-shim' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'vdbak-shim' }, () => ({
      contents: BINDINGS_SHIM,
      loader: 'js',
      resolveDir: ROOT,
    }));
  },
};

const tmp = `${OUT}.${process.pid}.tmp`;
await build({
  entryPoints: [ENTRY],
  outfile: tmp,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  external,
  plugins: [ownUrls, sqliteBindings],
  banner: { js: BANNER },
  legalComments: 'none',
  // a smaller source is less to read at every start; names are kept for stack traces and `.name`
  minifyWhitespace: true,
  minifySyntax: true,
  keepNames: true,
  // non-ASCII characters in strings come out as escapes, and no comment is kept: the file is ASCII
  charset: 'ascii',
  logLevel: 'warning',
});
const body = readFileSync(tmp);
// bin/vdbak.js reads the bundle as latin1, which is exact only for ASCII
const nonAscii = body.findIndex((b) => b > 0x7f);
if (nonAscii >= 0) throw new Error(`bundle-cli: ${tmp} has a non-ASCII byte at ${nonAscii}`);
renameSync(tmp, OUT);
const st = statSync(OUT);
writeFileSync(
  STAMP,
  `${JSON.stringify({ sha256: createHash('sha256').update(body).digest('hex'), size: st.size, mtimeMs: st.mtimeMs })}\n`,
);
console.log(`bundle-cli: ${relative(ROOT, OUT)} (${(st.size / 1024).toFixed(0)} KiB)`);
