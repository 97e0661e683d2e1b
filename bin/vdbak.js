#!/usr/bin/env node
// The vdbak command. `npm run build` compiles the TypeScript sources to dist/ and bundles the
// command line into dist/vdbak.cjs (scripts/bundle-cli.js); without the bundle, dist/ runs as is.
//
// A single-file restore is mostly start-up, and most of start-up is compiling JavaScript: Node
// >= 22.1 keeps compiled code between runs itself (module.enableCompileCache); on older Node the
// bundle is compiled here with a V8 code cache kept in the user's cache folder. This file is
// CommonJS (bin/package.json): an ES module entry would start Node's ES module loader for nothing.
'use strict';
/* global require, __dirname */
/* eslint-disable @typescript-eslint/no-require-imports -- this entry is CommonJS (bin/package.json) */
const {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} = require('node:fs');
const nodeModule = require('node:module');
const { homedir } = require('node:os');
const { isAbsolute, join } = require('node:path');
const { pathToFileURL } = require('node:url');
const { setFlagsFromString } = require('node:v8');
const { Script } = require('node:vm');

const dist = join(__dirname, '..', 'dist');
const bundle = join(dist, 'vdbak.cjs');
const cli = join(dist, 'agent', 'cli.js');

/** VDBAK_CODE_CACHE=0 turns the cache off; so does Node's own switch for its compile cache. */
const cacheOff = process.env.VDBAK_CODE_CACHE === '0' || !!process.env.NODE_DISABLE_COMPILE_CACHE;

/** The folder for our code cache: $XDG_CACHE_HOME/vdbak, else ~/.cache/vdbak (a relative XDG path is ignored, as the spec says). */
function cacheFolder() {
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.cache'), 'vdbak');
}

/** Only a folder that this user owns and no one else may write to holds code we run. */
function ownedPrivately(dir) {
  try {
    const st = statSync(dir);
    return st.isDirectory() && st.uid === process.getuid() && (st.mode & 0o022) === 0;
  } catch {
    return false;
  }
}

/**
 * The cache file for this build of the bundle and this Node, or undefined when the bundle is
 * not the one its stamp (dist/vdbak.json, written by the build) names: V8 itself checks only
 * the source's length, so the cache is keyed by the build's content hash.
 */
function cacheFile() {
  if (cacheOff || !process.getuid) return undefined;
  try {
    const stamp = JSON.parse(readFileSync(join(dist, 'vdbak.json'), 'utf8'));
    const st = statSync(bundle);
    if (st.size !== stamp.size || st.mtimeMs !== stamp.mtimeMs || !/^[0-9a-f]{64}$/.test(stamp.sha256)) {
      return undefined;
    }
    // one cache per command: a cache holds what its first run compiled, and `--version` compiles little of a restore
    const arg = process.argv[2] ?? '';
    const command = /^[a-z][a-z-]{0,31}$/.test(arg) ? arg : 'other';
    const dir = cacheFolder();
    const name = `cli-${stamp.sha256.slice(0, 32)}-${command}-${process.version}-${process.arch}.v8`;
    return { dir, path: join(dir, name) };
  } catch {
    return undefined;
  }
}

/** A cache unchanged this long is removed when a new one is written: every build makes a new one. */
const CACHE_MAX_AGE_MS = 7 * 24 * 3600 * 1000;

function forgetOldCaches(dir) {
  const now = Date.now();
  for (const name of readdirSync(dir)) {
    if (!name.startsWith('cli-')) continue;
    const path = join(dir, name);
    try {
      if (now - statSync(path).mtimeMs > CACHE_MAX_AGE_MS) unlinkSync(path);
    } catch {
      // removed by another run meanwhile
    }
  }
}

/**
 * Runs `fn` with V8 checking code cache checksums, on when a cache is made and when one is read:
 * without it V8 trusts the cache's bytes, and a damaged file (a bit flip, a crash mid-write)
 * makes the process crash instead of compiling afresh.
 */
function withChecksums(fn) {
  setFlagsFromString('--verify-snapshot-checksum');
  try {
    return fn();
  } finally {
    setFlagsFromString('--no-verify-snapshot-checksum');
  }
}

/** Runs the bundle as a CommonJS module, from a code cache when there is a good one; keeps a new cache at exit. */
function runBundle() {
  // the build makes the bundle pure ASCII (scripts/bundle-cli.js checks), so latin1 reads it exactly, and faster
  const source = readFileSync(bundle, 'latin1');
  const cache = cacheFile();
  let cachedData;
  if (cache && ownedPrivately(cache.dir)) {
    try {
      cachedData = readFileSync(cache.path);
    } catch {
      // no cache yet
    }
  }
  const script = withChecksums(() => new Script(nodeModule.wrap(source), { filename: bundle, cachedData }));
  if (cache && (!cachedData || script.cachedDataRejected)) {
    // at exit the cache holds every function this run compiled, not only the top level
    process.once('exit', () => {
      try {
        mkdirSync(cache.dir, { recursive: true, mode: 0o700 });
        if (!ownedPrivately(cache.dir)) return;
        const tmp = `${cache.path}.${process.pid}.tmp`;
        writeFileSync(
          tmp,
          withChecksums(() => script.createCachedData()),
          { mode: 0o600 },
        );
        renameSync(tmp, cache.path);
        forgetOldCaches(cache.dir);
      } catch {
        // a cache we cannot write costs the next run its compile time, nothing else
      }
    });
  }
  const mod = { exports: {}, filename: bundle, id: bundle, loaded: false };
  script.runInThisContext()(mod.exports, nodeModule.createRequire(bundle), mod, bundle, dist);
}

/** The bundle, when the build made one after the last compile of dist/ (a bare tsc run leaves it stale). */
function freshBundle() {
  try {
    return statSync(bundle).mtimeMs >= statSync(cli).mtimeMs;
  } catch {
    return false;
  }
}

if (freshBundle()) {
  if (nodeModule.enableCompileCache && !cacheOff) {
    nodeModule.enableCompileCache();
    require(bundle);
  } else {
    runBundle();
  }
} else if (existsSync(cli)) {
  nodeModule.enableCompileCache?.();
  import(pathToFileURL(cli).href).catch((e) => {
    process.stderr.write(`vdbak: internal error: ${e instanceof Error ? e.stack : String(e)}\n`);
    process.exitCode = 70;
  });
} else {
  process.stderr.write('vdbak: not built yet — run `npm run build` in the vdbak folder first\n');
  process.exitCode = 2;
}
