/**
 * loadConfig: the one place the daemon's configuration is read. The YAML file
 * (or nothing: the embedded defaults) is parsed, laid over the defaults,
 * validated whole, given its API token, and frozen. A bad file is refused with
 * every problem at once, each naming its key path and line:
 *
 *     config /etc/vdbak.yaml: schedules[1].cron: "61 * * * *" is not a cron expression (minute 61 out of range 0–59) (line 14)
 *
 * The format is documented in agent/config/README.md and shown, with every key,
 * in agent/config/vdbak.example.yaml.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { resolve } from 'node:path';
import { LineCounter, parseDocument, type Document } from 'yaml';
import { errorsFor, isVdbakError, type VdbakError } from '../../parsers/errors.js';
import { isObject, type KeyPath, Problems, showPath } from './check.js';
import { EMBEDDED_SOURCE, embeddedDefaults } from './defaults.js';
import { generatedToken } from './token.js';
import type { DaemonConfig } from './types.js';
import { MERGED_SECTIONS, validateConfig } from './validate.js';

/** Largest config file read; real ones are a few KiB. */
export const MAX_CONFIG_FILE_BYTES = 1024 * 1024;
/** YAML aliases expanded at most: a few are handy (one window used twice), many are an expansion bomb. */
const MAX_YAML_ALIASES = 100;

/** The error a refused config throws; details.problems holds one line per problem. */
export const CONFIG_INVALID = 'CONFIG_INVALID';

function readText(path: string): string {
  const err = errorsFor({ image: path, layer: 'config' });
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
    if (code === 'ENOENT') throw err.notFound('CONFIG_NOT_FOUND', `config ${path}: no such file`);
    throw err.io('CONFIG_READ', `config ${path}: cannot open (${code})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw err.unsupported('CONFIG_NOT_FILE', `config ${path}: not a regular file`);
    if (st.size > MAX_CONFIG_FILE_BYTES) {
      throw err.limit('CONFIG_TOO_LARGE', `config ${path}: ${st.size} bytes`, { cap: MAX_CONFIG_FILE_BYTES });
    }
    const buf = Buffer.alloc(st.size);
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got).toString('utf8');
  } catch (e) {
    if (isVdbakError(e)) throw e;
    throw err.io('CONFIG_READ', `config ${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  } finally {
    closeSync(fd);
  }
}

interface Parsed {
  tree: unknown;
  /** " (line N)" for a key path, when the file holds it. */
  where(path: KeyPath): string;
}

function parseYaml(text: string, p: Problems): Parsed | undefined {
  const lines = new LineCounter();
  const doc: Document.Parsed = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const lineOf = (offset: number): number => lines.linePos(offset).line;
  // one problem per line: a single unquoted '* * * * *' makes yaml report five
  const lineSeen = new Set<number>();
  for (const e of [...doc.errors, ...doc.warnings]) {
    const line = lineOf(e.pos[0]);
    if (lineSeen.has(line)) continue;
    lineSeen.add(line);
    const hint = /alias/i.test(e.message)
      ? ` (quote a value that starts with '*' or '&', as in cron: '* * * * *')`
      : '';
    p.add([], `line ${line}: ${e.message.split('\n')[0] ?? e.code}${hint}`);
  }
  if (doc.errors.length > 0 || doc.warnings.length > 0) return undefined;
  let tree: unknown;
  try {
    tree = doc.toJS({ maxAliasCount: MAX_YAML_ALIASES });
  } catch (e) {
    // yaml throws a ReferenceError for an alias bomb
    p.add([], `cannot be expanded: ${e instanceof Error ? e.message : String(e)}`);
    return undefined;
  }
  const where = (path: KeyPath): string => {
    for (let n = path.length; n > 0; n--) {
      const node: unknown = doc.getIn(path.slice(0, n), true);
      const range = (node as { range?: [number, number, number] } | undefined)?.range;
      if (range) return ` (line ${lineOf(range[0])})`;
    }
    return '';
  };
  return { tree: tree ?? {}, where };
}

/** The file over the defaults: top-level keys replace, the MERGED_SECTIONS merge key by key. */
function overDefaults(file: unknown, defaults: Record<string, unknown>): unknown {
  if (!isObject(file)) return file;
  const out: Record<string, unknown> = { ...defaults, ...file };
  for (const k of MERGED_SECTIONS) {
    const mine = file[k];
    const base = defaults[k];
    if (isObject(mine) && isObject(base)) out[k] = { ...base, ...mine };
  }
  return out;
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    for (const child of Object.values(v)) deepFreeze(child);
    Object.freeze(v);
  }
  return v;
}

function refuse(source: string, p: Problems, where: (path: KeyPath) => string): VdbakError {
  // a problem of the whole file (YAML syntax, not a mapping) has no key path to name
  const lines = p.list.map(
    (x) => `config ${source}: ${x.path.length > 0 ? `${showPath(x.path)}: ` : ''}${x.message}${where(x.path)}`,
  );
  const rest = p.lines().slice(p.list.length);
  const problems = [...lines, ...rest.map((l) => `config ${source}: ${l}`)];
  const n = p.count;
  return errorsFor({ image: source, layer: 'config' }).corrupt(
    CONFIG_INVALID,
    `${n} problem${n === 1 ? '' : 's'}:\n${problems.join('\n')}\n`,
    { problems },
  );
}

/**
 * Reads, validates and freezes the daemon's config. `path` undefined → the
 * embedded defaults ($VDBAK_REPO, $VDBAK_DATASTORES). Throws a typed error:
 * CONFIG_INVALID with details.problems, or CONFIG_NOT_FOUND / CONFIG_READ /
 * CONFIG_TOO_LARGE for a file that cannot be read.
 *
 * Side effect: with no api.token / api.tokenFile, the token is generated once
 * into <repo>/api-token (the repository folder is created for it).
 */
export function loadConfig(path: string | undefined, env: NodeJS.ProcessEnv = process.env): DaemonConfig {
  const defaults = embeddedDefaults(env);
  const source = path === undefined ? EMBEDDED_SOURCE : resolve(path);
  const p = new Problems();
  let tree: unknown = defaults;
  let where: (path: KeyPath) => string = () => '';
  if (path !== undefined) {
    const parsed = parseYaml(readText(source), p);
    if (!parsed) throw refuse(source, p, where);
    tree = overDefaults(parsed.tree, defaults);
    where = parsed.where;
  }
  const cfg = validateConfig(p, tree, source);
  if (cfg && cfg.api.token === '') {
    const token = generatedToken(p, cfg.repo);
    if (token !== undefined) cfg.api = { listen: cfg.api.listen, token };
  }
  if (!cfg || p.count > 0) throw refuse(source, p, where);
  return deepFreeze(cfg);
}

/** The problem lines of a refused config (CONFIG_INVALID), for printing one per line; undefined for other errors. */
export function configProblems(e: unknown): string[] | undefined {
  if (!isVdbakError(e) || e.code !== CONFIG_INVALID) return undefined;
  const list = e.details.problems;
  return Array.isArray(list) ? list.map(String) : undefined;
}
