/**
 * The API's bearer token: given in the config (api.token), read from a file
 * only its owner can read (api.tokenFile), or, when neither is given,
 * generated once into <repo>/api-token (0600) and reused on every start, so
 * the CLI on the same machine can read it and a restart does not log every
 * client out.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, mkdirSync, openSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type KeyPath, type Problems, show } from './check.js';
import { TOKEN_FILE_NAME } from './defaults.js';

/** Printable ASCII without spaces (it travels in an HTTP header), long enough not to be guessed. */
export const MIN_TOKEN_CHARS = 16;
export const MAX_TOKEN_CHARS = 1024;
const TOKEN_RE = /^[\x21-\x7e]+$/;
/** Bytes of randomness in a generated token (256 bits). */
const GENERATED_TOKEN_BYTES = 32;
/** Permission bits for group and others: a token file with any of them set is refused. */
const GROUP_OTHER_BITS = 0o077;
/** Largest token file read (the token plus a newline, with room for comments we do not allow anyway). */
const MAX_TOKEN_FILE_BYTES = MAX_TOKEN_CHARS + 2;

/** Undefined when `t` is a usable token; else why not. */
export function tokenProblem(t: string): string | undefined {
  if (t.length < MIN_TOKEN_CHARS) return `is ${t.length} characters long; a token needs at least ${MIN_TOKEN_CHARS}`;
  if (t.length > MAX_TOKEN_CHARS) return `is longer than ${MAX_TOKEN_CHARS} characters`;
  if (!TOKEN_RE.test(t)) return 'may hold only printable ASCII characters without spaces';
  return undefined;
}

type Read = { token: string } | { problem: string } | { missing: true };

/** Reads a token file, refusing one that group or others may read or write. */
function readTokenFile(file: string): Read {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
    return code === 'ENOENT' ? { missing: true } : { problem: `${file} cannot be opened (${code})` };
  }
  try {
    // fstat on the opened file: the file checked is the file read, even if the name is swapped meanwhile
    const st = fstatSync(fd);
    if (!st.isFile()) return { problem: `${file} is not a regular file` };
    const mode = st.mode & 0o777;
    if ((mode & GROUP_OTHER_BITS) !== 0) {
      return {
        problem:
          `${file} has mode ${mode.toString(8).padStart(4, '0')}: group or others may read or change the API token; ` +
          `make it private (chmod 600 ${file})`,
      };
    }
    if (st.size > MAX_TOKEN_FILE_BYTES) return { problem: `${file} is ${st.size} bytes; a token file holds one token` };
    const buf = Buffer.alloc(MAX_TOKEN_FILE_BYTES);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const token = buf.subarray(0, n).toString('utf8').trim();
    const why = tokenProblem(token);
    return why === undefined ? { token } : { problem: `the token in ${file} ${why}` };
  } catch (e) {
    return { problem: `${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)})` };
  } finally {
    closeSync(fd);
  }
}

/** The token in `file`, or undefined with a problem recorded under `path`. */
export function tokenFromFile(p: Problems, path: KeyPath, file: string): string | undefined {
  const r = readTokenFile(file);
  if ('token' in r) return r.token;
  p.add(path, 'missing' in r ? `${show(file)} does not exist` : r.problem);
  return undefined;
}

/**
 * The token kept in <repo>/api-token, made on first use. Only called when the
 * rest of the config is valid: a broken config writes nothing.
 */
export function generatedToken(p: Problems, repo: string): string | undefined {
  const file = join(repo, TOKEN_FILE_NAME);
  const path = ['api', 'token'];
  const first = readTokenFile(file);
  if ('token' in first) return first.token;
  if ('problem' in first) {
    p.add(path, `none given, and the generated one cannot be used: ${first.problem}`);
    return undefined;
  }
  const token = randomBytes(GENERATED_TOKEN_BYTES).toString('base64url');
  try {
    mkdirSync(repo, { recursive: true, mode: 0o700 });
    // 'wx': two daemons starting at once must not each write their own token
    writeFileSync(file, `${token}\n`, { flag: 'wx', mode: 0o600 });
    return token;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    if (code === 'EEXIST') {
      const again = readTokenFile(file);
      if ('token' in again) return again.token;
    }
    p.add(path, `none given, and ${file} cannot be created (${code}); set api.token or api.tokenFile`);
    return undefined;
  }
}
