#!/usr/bin/env node
// The vdbak command. The TypeScript sources are compiled to dist/ by `npm run build`.
import { existsSync } from 'node:fs';
import { fileURLToPath, URL } from 'node:url';

// Node ≥ 22.1 caches compiled code between runs (a single-file restore is mostly start-up time)
import * as nodeModule from 'node:module';
nodeModule.enableCompileCache?.();

const cli = fileURLToPath(new URL('../dist/agent/cli.js', import.meta.url));
if (!existsSync(cli)) {
  process.stderr.write('vdbak: not built yet — run `npm run build` in the vdbak folder first\n');
  process.exit(2);
}
await import(cli);
