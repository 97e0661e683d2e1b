import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// dist/agent/version.js and agent/version.ts sit at different depths below package.json
const candidates = ['../../package.json', '../package.json'].map((p) => fileURLToPath(new URL(p, import.meta.url)));
const found = candidates.find((p) => existsSync(p) && JSON.parse(readFileSync(p, 'utf8')).name === 'vdbak');
/** The package version. */
export const VERSION: string = found
  ? (JSON.parse(readFileSync(found, 'utf8')) as { version: string }).version
  : '0.0.0';
