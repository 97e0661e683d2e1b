/**
 * `config.json` on the target: the repository's settings as `init` fixed
 * them (id, chunk sizes, zstd level, pack size), so that a new controller
 * knows what the target holds before it has any catalog. Written by the first
 * ship (and again whenever it is missing); never rewritten with other values,
 * since the settings of a repository do not change after init.
 *
 * A target whose config.json names another repository is refused: two
 * repositories writing into one target would delete each other's packs.
 */
import { errorsFor } from '../../parsers/errors.js';
import { type ChunkSizes, validateChunkSizes } from '../chunk/fastcdc.js';
import type { RepoSettings } from '../repo.js';
import type { Target } from '../../transport/targets/types.js';

export const CONFIG_OBJECT = 'config.json';
export const CONFIG_FORMAT = 'vdbak-repo-config';
export const CONFIG_VERSION = 1;
const MAX_CONFIG_BYTES = 64 * 1024;

export interface TargetConfig {
  format: typeof CONFIG_FORMAT;
  version: number;
  repoId: string;
  chunkSizes: ChunkSizes;
  zstdLevel: number;
  packTargetSize: number;
}

export function configOf(s: RepoSettings): TargetConfig {
  return {
    format: CONFIG_FORMAT,
    version: CONFIG_VERSION,
    repoId: s.repoId,
    chunkSizes: { ...s.chunkSizes },
    zstdLevel: s.zstdLevel,
    packTargetSize: s.packTargetSize,
  };
}

/** Reads and checks config.json; undefined when the target has none. */
export async function readTargetConfig(target: Target): Promise<TargetConfig | undefined> {
  let bytes: Buffer;
  try {
    const { size } = await target.stat(CONFIG_OBJECT);
    const err = errorsFor({ image: `${target.location}/${CONFIG_OBJECT}`, layer: 'repo' });
    if (size > MAX_CONFIG_BYTES) throw err.limit('SHIP_CONFIG_SIZE', `${size} bytes is too big for a config`);
    bytes = await target.get(CONFIG_OBJECT);
  } catch (e) {
    if (target.isNotFound(e)) return undefined;
    throw e;
  }
  return parseTargetConfig(bytes, `${target.location}/${CONFIG_OBJECT}`);
}

export function parseTargetConfig(bytes: Uint8Array, where: string): TargetConfig {
  const err = errorsFor({ image: where, layer: 'repo' });
  const bad = (field: string, why: string) => err.corrupt('SHIP_CONFIG_BAD', `config field '${field}' ${why}`);
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>;
  } catch (e) {
    throw err.corrupt('SHIP_CONFIG_JSON', `config is not JSON (${(e as Error).message})`);
  }
  if (typeof c !== 'object' || c === null || Array.isArray(c)) throw bad('(root)', 'is not an object');
  if (c.format !== CONFIG_FORMAT) throw bad('format', `is not '${CONFIG_FORMAT}'`);
  if (c.version !== CONFIG_VERSION) {
    throw err.unsupported('SHIP_CONFIG_VERSION', `config version ${String(c.version)} is not supported`);
  }
  if (typeof c.repoId !== 'string' || c.repoId === '') throw bad('repoId', 'is not a string');
  if (!Number.isInteger(c.zstdLevel)) throw bad('zstdLevel', 'is not an integer');
  if (!Number.isInteger(c.packTargetSize) || (c.packTargetSize as number) < 1) {
    throw bad('packTargetSize', 'is not a positive integer');
  }
  try {
    validateChunkSizes(c.chunkSizes as ChunkSizes);
  } catch (e) {
    throw bad('chunkSizes', `is not valid (${(e as Error).message})`);
  }
  return c as unknown as TargetConfig;
}

/**
 * Writes config.json when the target has none; refuses a target that belongs
 * to another repository. Returns whether it wrote.
 */
export async function ensureTargetConfig(target: Target, settings: RepoSettings): Promise<boolean> {
  const have = await readTargetConfig(target);
  if (have) {
    if (have.repoId !== settings.repoId) {
      throw errorsFor({ image: target.location, layer: 'repo' }).unsupported(
        'SHIP_OTHER_REPO',
        `the target belongs to repository ${have.repoId}, not to this one (${settings.repoId})`,
      );
    }
    return false;
  }
  await target.put(CONFIG_OBJECT, Buffer.from(`${JSON.stringify(configOf(settings), null, 2)}\n`));
  return true;
}
