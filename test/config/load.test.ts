/**
 * loadConfig: the embedded defaults, the example file, one test per kind of
 * bad key (each must be named in its message, alone, with its line), every
 * problem at once, the API token's sources and file permissions, and the
 * frozen result.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { DEFAULT_LIMITS, MB, resolveLimits } from '../../agent/throttle/controller.js';
import { configProblems, loadConfig, MAX_CONFIG_FILE_BYTES } from '../../agent/config/load.js';
import type { DaemonConfig } from '../../agent/config/types.js';
import { ROOT } from '../helpers/fixtures.js';
import { VdbakError } from '../../parsers/errors.js';

let tmp: string;
let ds1: string;
let ds2: string;
let repo: string;
let n = 0;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'vdbak-config-'));
  ds1 = join(tmp, 'ds1');
  ds2 = join(tmp, 'ds-two');
  repo = join(tmp, 'repo');
  mkdirSync(ds1);
  mkdirSync(ds2);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A fresh file name (and a fresh repo folder unless given) per case. */
function writeConfig(text: string): string {
  const file = join(tmp, `c${++n}.yaml`);
  writeFileSync(file, text);
  return file;
}

/** A valid config; cases change one thing in it. */
function base(): Record<string, unknown> {
  return {
    repo: join(tmp, `repo${++n}`),
    datastores: [
      { name: 'ds1', path: ds1 },
      { name: 'two', path: ds2 },
    ],
    schedules: [
      {
        name: 'nightly',
        kind: 'backup',
        cron: '0 1 * * *',
        window: { start: '01:00', end: '06:00' },
        datastores: ['ds1'],
      },
      { name: 'check', kind: 'check', cron: '0 8 1 * *', readData: true },
    ],
    retention: { keepDaily: 3 },
    throttle: { maxMBps: 150 },
    api: { token: 'a-long-enough-token-0123456789' },
    log: { level: 'debug' },
  };
}

function problemsOf(file: string | undefined, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    loadConfig(file, env);
  } catch (e) {
    const p = configProblems(e);
    if (p) {
      expect(e).toBeInstanceOf(VdbakError);
      expect((e as VdbakError).layer).toBe('config');
      return p;
    }
    throw e;
  }
  throw new Error(`${file} loaded without problems`);
}

function mode(path: string): number {
  return statSync(path).mode & 0o777;
}

describe('embedded defaults', () => {
  it('read $VDBAK_REPO and $VDBAK_DATASTORES, schedule the nightly backup, ship, forget and check, and generate the token once', () => {
    const r = join(tmp, 'defaults-repo');
    const env = { VDBAK_REPO: r, VDBAK_DATASTORES: `${ds1}:${ds2}/` };
    const c = loadConfig(undefined, env);
    expect(c.source).toBe('embedded defaults');
    expect(c.repo).toBe(r);
    expect(c.datastores).toEqual([
      { name: 'ds1', path: ds1 },
      { name: 'ds-two', path: ds2 },
    ]);
    expect(c.schedules.map((s) => [s.kind, s.cron])).toEqual([
      ['backup', '0 1 * * *'],
      ['ship', '30 6 * * *'],
      ['forget', '0 7 * * 0'],
      ['check', '0 8 1 * *'],
    ]);
    expect(c.schedules[0]?.window).toEqual({ start: '01:00', end: '06:00' });
    expect(c.schedules[2]?.prune).toBe(true);
    expect(c.retention).toEqual({ keepDaily: 7, keepWeekly: 4, keepMonthly: 6 });
    expect(c.throttle.enabled).toBe(true);
    const { enabled: _on, ...limits } = c.throttle;
    expect(resolveLimits(limits)).toEqual(DEFAULT_LIMITS);
    expect(c.api.listen).toBe('127.0.0.1:8470');
    expect(c.restoreRoots).toEqual([join(r, 'restore')]);
    expect(c.log.level).toBe('info');
    expect(c.ship).toEqual({ keep: 7, afterBackup: true });

    const tokenFile = join(r, 'api-token');
    expect(mode(tokenFile)).toBe(0o600);
    expect(readFileSync(tokenFile, 'utf8').trim()).toBe(c.api.token);
    expect(c.api.token.length).toBeGreaterThanOrEqual(32);
    expect(loadConfig(undefined, env).api.token).toBe(c.api.token);
  });

  it('without the environment: /var/lib/vdbak and no datastore', () => {
    // the repo folder may not be writable here: only check what does not need the token
    try {
      const c = loadConfig(undefined, {});
      expect(c.repo).toBe('/var/lib/vdbak');
      expect(c.datastores).toEqual([]);
    } catch (e) {
      expect(configProblems(e)?.join('\n')).toMatch(/api\.token: none given, and \/var\/lib\/vdbak\/api-token/);
    }
  });

  it('a datastore in $VDBAK_DATASTORES that does not exist is named', () => {
    const p = problemsOf(undefined, { VDBAK_REPO: repo, VDBAK_DATASTORES: `${ds1}:${tmp}/gone` });
    expect(p).toEqual([`config embedded defaults: datastores[1].path: "${tmp}/gone" is not there`]);
  });
});

describe('the example file', () => {
  const example = readFileSync(join(ROOT, 'agent/config/vdbak.example.yaml'), 'utf8');
  /** The example with its /srv and /var/lib paths moved under the test's folder, and the datastores made. */
  function localExample(): string {
    const text = example.replaceAll('/srv/', `${tmp}/srv/`).replaceAll('/var/lib/vdbak', join(tmp, 'example-repo'));
    mkdirSync(join(tmp, 'srv/vmstore/ds1'), { recursive: true });
    mkdirSync(join(tmp, 'srv/vmstore/nfs-gold'), { recursive: true });
    return text;
  }

  it('loads and validates, with every key taking effect', () => {
    const c = loadConfig(writeConfig(localExample()), {});
    expect(c.datastores.map((d) => d.name)).toEqual(['ds1', 'gold']);
    expect(c.target).toBe(join(tmp, 'srv/backup/vdbak'));
    expect(c.schedules.map((s) => s.name)).toEqual(['nightly-backup', 'daily-ship', 'weekly-forget', 'monthly-check']);
    expect(c.schedules[0]?.datastores).toEqual(['ds1', 'gold']);
    expect(c.schedules[3]?.readData).toBe(false);
    expect(c.retention).toEqual({
      keepLast: 3,
      keepHourly: 0,
      keepDaily: 7,
      keepWeekly: 4,
      keepMonthly: 6,
      keepYearly: 1,
    });
    // the example shows the defaults: they resolve to the controller's own
    const { enabled: _on, ...limits } = c.throttle;
    expect(resolveLimits(limits)).toEqual({ ...DEFAULT_LIMITS, quietWindows: [{ start: '22:00', end: '23:30' }] });
    expect(c.throttle.maxBytesPerSec).toBe(200 * MB);
    expect(c.restoreRoots).toEqual([join(tmp, 'srv/restore')]);
    expect(c.threads).toBe(4);
    expect(c.ship).toEqual({ keep: 7, afterBackup: true });
  });

  it('loads with its commented token or tokenFile line turned on', () => {
    const text = localExample();
    const withToken = text.replace("  # token: 'at-least", "  token: 'at-least");
    expect(withToken).not.toBe(text);
    expect(loadConfig(writeConfig(withToken), {}).api.token).toBe('at-least-16-printable-characters');

    const tokenFile = join(tmp, 'srv/example-token');
    writeFileSync(tokenFile, 'token-from-a-private-file\n', { mode: 0o600 });
    const withFile = text.replace('  # tokenFile: /etc/vdbak/api-token', `  tokenFile: ${tokenFile}`);
    expect(withFile).not.toBe(text);
    expect(loadConfig(writeConfig(withFile), {}).api.token).toBe('token-from-a-private-file');
  });
});

describe('a valid file', () => {
  it('lays its keys over the defaults and converts MB/s', () => {
    const c = loadConfig(writeConfig(stringify(base())), {});
    expect(c.throttle).toEqual({ enabled: true, maxBytesPerSec: 150 * MB });
    expect(c.api).toEqual({ listen: '127.0.0.1:8470', token: 'a-long-enough-token-0123456789' });
    expect(c.ship).toEqual({ keep: 7, afterBackup: true });
    expect(c.retention).toEqual({ keepDaily: 3 });
    expect(c.schedules).toHaveLength(2);
  });

  it('takes 6-field cron expressions, IPv6 listen addresses and an empty schedule list', () => {
    const cfg = base();
    cfg.schedules = [{ name: 'often', kind: 'ship', cron: '*/30 * * * * *' }];
    cfg.api = { listen: '[::1]:9000', token: 'a-long-enough-token-0123456789' };
    expect(loadConfig(writeConfig(stringify(cfg)), {}).api.listen).toBe('[::1]:9000');
    cfg.schedules = [];
    expect(loadConfig(writeConfig(stringify(cfg)), {}).schedules).toEqual([]);
  });

  it('an empty file (or one of comments) is the embedded defaults, with the file as its source', () => {
    const r = join(tmp, 'empty-repo');
    const file = writeConfig('# nothing set yet\n');
    const c = loadConfig(file, { VDBAK_REPO: r });
    expect(c.source).toBe(file);
    expect(c.repo).toBe(r);
    expect(c.schedules.map((s) => s.name)).toEqual(['nightly-backup', 'daily-ship', 'weekly-forget', 'monthly-check']);
  });

  it('is deeply frozen: every mutation throws', () => {
    const c: DaemonConfig = loadConfig(writeConfig(stringify(base())), {});
    const m = c as unknown as Record<string, unknown> & {
      datastores: { name: string }[];
      schedules: { window: { start: string } }[];
      api: { token: string };
      throttle: { maxBytesPerSec: number };
      retention: { keepDaily: number };
    };
    expect(() => {
      m.repo = '/elsewhere';
    }).toThrow(TypeError);
    expect(() => m.datastores.push({ name: 'x' })).toThrow(TypeError);
    expect(() => {
      (m.datastores[0] as { name: string }).name = 'x';
    }).toThrow(TypeError);
    expect(() => {
      (m.schedules[0] as { window: { start: string } }).window.start = '02:00';
    }).toThrow(TypeError);
    expect(() => {
      m.api.token = 'stolen';
    }).toThrow(TypeError);
    expect(() => {
      m.throttle.maxBytesPerSec = 1;
    }).toThrow(TypeError);
    expect(() => {
      m.retention.keepDaily = 0;
    }).toThrow(TypeError);
    expect(Object.isFrozen(c.restoreRoots)).toBe(true);
  });
});

describe('a bad key is named, alone, with why and where', () => {
  type Edit = (c: Record<string, unknown>) => void;
  const sched = (c: Record<string, unknown>): Record<string, unknown>[] => c.schedules as Record<string, unknown>[];
  const cases: [string, Edit, string, RegExp][] = [
    ['unknown top-level key', (c) => (c.datastore = []), 'datastore', /unknown key \(did you mean datastores\?\)/],
    ['repo relative', (c) => (c.repo = 'var/lib/vdbak'), 'repo', /is not an absolute path/],
    ['repo not a string', (c) => (c.repo = 5), 'repo', /must be a non-empty string, not 5/],
    ['target relative', (c) => (c.target = 'backup'), 'target', /is not an absolute path/],
    ['datastores not a list', (c) => (c.datastores = 'x'), 'datastores', /must be a list/],
    [
      'datastore name',
      (c) => ((c.datastores as object[])[1] = { name: 'bad name', path: ds2 }),
      'datastores[1].name',
      /is not a name/,
    ],
    [
      'datastore missing folder',
      (c) => ((c.datastores as object[])[1] = { name: 'two', path: join(ds2, 'nope') }),
      'datastores[1].path',
      /is not there/,
    ],
    [
      'datastore is a file',
      (c) => ((c.datastores as object[])[1] = { name: 'two', path: join(ROOT, 'package.json') }),
      'datastores[1].path',
      /is not a folder/,
    ],
    [
      'datastore relative',
      (c) => ((c.datastores as object[])[1] = { name: 'two', path: 'ds2' }),
      'datastores[1].path',
      /is not an absolute path/,
    ],
    [
      'datastore names repeat',
      (c) => ((c.datastores as object[])[1] = { name: 'ds1', path: ds2 }),
      'datastores[1].name',
      /already the name of datastores\[0\]/,
    ],
    [
      'datastore inside another',
      (c) => ((c.datastores as object[])[1] = { name: 'two', path: tmp }),
      'datastores[1].path',
      /holds datastores\[0\].*found twice/,
    ],
    [
      'datastore key typo',
      (c) => ((c.datastores as object[])[1] = { name: 'two', path: ds2, pth: 1 }),
      'datastores[1].pth',
      /did you mean path\?/,
    ],
    [
      'cron out of range',
      (c) => (sched(c)[1]!.cron = '61 * * * *'),
      'schedules[1].cron',
      /"61 \* \* \* \*" is not a cron expression \(minute 61 out of range 0–59\)/,
    ],
    ['cron field count', (c) => (sched(c)[1]!.cron = '0 1 * *'), 'schedules[1].cron', /expected 5 or 6 fields/],
    ['cron impossible day', (c) => (sched(c)[1]!.cron = '0 0 31 2 *'), 'schedules[1].cron', /day of month/],
    ['cron hour', (c) => (sched(c)[0]!.cron = '0 24 * * *'), 'schedules[0].cron', /hour 24 out of range 0–23/],
    ['schedule kind', (c) => (sched(c)[1]!.kind = 'backups'), 'schedules[1].kind', /is not a schedule kind/],
    [
      'schedule name repeat',
      (c) => (sched(c)[1]!.name = 'nightly'),
      'schedules[1].name',
      /already the name of schedules\[0\]/,
    ],
    ['schedule name missing', (c) => delete sched(c)[1]!.name, 'schedules[1].name', /is not a name/],
    [
      'window time',
      (c) => (sched(c)[0]!.window = { start: '1:00', end: '24:00' }),
      'schedules[0].window.end',
      /is not a time of day/,
    ],
    [
      'window as string',
      (c) => (sched(c)[0]!.window = '01:00-06:00'),
      'schedules[0].window',
      /must be a mapping of start, end/,
    ],
    [
      'unknown datastore',
      (c) => (sched(c)[0]!.datastores = ['ds1', 'ds3']),
      'schedules[0].datastores[1]',
      /"ds3" is not a datastore name \(ds1, two\)/,
    ],
    [
      'readData on a backup',
      (c) => (sched(c)[0]!.readData = true),
      'schedules[0].readData',
      /only a check schedule takes readData/,
    ],
    [
      'prune on a check',
      (c) => (sched(c)[1]!.prune = true),
      'schedules[1].prune',
      /only a forget schedule takes prune/,
    ],
    ['vms not strings', (c) => (sched(c)[0]!.vms = ['win01', 3]), 'schedules[0].vms[1]', /non-empty string/],
    ['schedule key typo', (c) => (sched(c)[0]!.crn = 'x'), 'schedules[0].crn', /did you mean cron\?/],
    ['retention count', (c) => (c.retention = { keepDaily: -1 }), 'retention.keepDaily', /out of range/],
    ['retention fraction', (c) => (c.retention = { keepDaily: 1.5 }), 'retention.keepDaily', /whole number/],
    ['retention no rule', (c) => (c.retention = { keepDaily: 0 }), 'retention', /would forget every backup/],
    [
      'retention CLI spelling',
      (c) => (c.retention = { 'keep-daily': 7 }),
      'retention.keep-daily',
      /did you mean keepDaily\?/,
    ],
    ['throttle rate zero', (c) => (c.throttle = { maxMBps: 0 }), 'throttle.maxMBps', /out of range/],
    ['throttle rate as a string', (c) => (c.throttle = { maxMBps: '200MB' }), 'throttle.maxMBps', /must be a number/],
    ['throttle bytes key', (c) => (c.throttle = { maxBytesPerSec: 1 }), 'throttle.maxBytesPerSec', /unknown key/],
    [
      'throttle limits together',
      (c) => (c.throttle = { maxMBps: 10, minMBps: 20 }),
      'throttle.minMBps',
      /is above maxMBps/,
    ],
    [
      'throttle stop under slow',
      (c) => (c.throttle = { slowDownMs: 50 }),
      'throttle.stopMs',
      /must be at least slowDownMs/,
    ],
    ['throttle percent', (c) => (c.throttle = { pausePressure: 150 }), 'throttle.pausePressure', /out of range/],
    ['throttle enabled', (c) => (c.throttle = { enabled: 'yes' }), 'throttle.enabled', /true or false/],
    [
      'quiet window',
      (c) => (c.throttle = { quietWindows: [{ start: '22:00', end: '7' }] }),
      'throttle.quietWindows[0].end',
      /not a time of day/,
    ],
    [
      'listen without port',
      (c) => (c.api = { listen: 'localhost', token: 'a-long-enough-token-0123456789' }),
      'api.listen',
      /is not host:port/,
    ],
    [
      'listen port range',
      (c) => (c.api = { listen: '127.0.0.1:70000', token: 'a-long-enough-token-0123456789' }),
      'api.listen',
      /is not host:port/,
    ],
    ['token short', (c) => (c.api = { token: 'short' }), 'api.token', /needs at least 16/],
    ['token with spaces', (c) => (c.api = { token: 'has spaces in the token' }), 'api.token', /printable ASCII/],
    [
      'token and file',
      (c) => (c.api = { token: 'a-long-enough-token-0123456789', tokenFile: '/x' }),
      'api.tokenFile',
      /both given/,
    ],
    ['token file missing', (c) => (c.api = { tokenFile: join(tmp, 'no-token') }), 'api.tokenFile', /does not exist/],
    ['restore root relative', (c) => (c.restoreRoots = ['restore']), 'restoreRoots[0]', /is not an absolute path/],
    ['restore root /', (c) => (c.restoreRoots = ['/']), 'restoreRoots[0]', /whole filesystem/],
    ['log level', (c) => (c.log = { level: 'verbose' }), 'log.level', /is not a log level/],
    ['ship keep 0', (c) => (c.ship = { keep: 0 }), 'ship.keep', /from 1 to 10000/],
    ['ship keep huge', (c) => (c.ship = { keep: 10_001 }), 'ship.keep', /out of range/],
    ['ship afterBackup', (c) => (c.ship = { afterBackup: 1 }), 'ship.afterBackup', /true or false/],
    ['threads', (c) => (c.threads = 0), 'threads', /out of range/],
  ];

  for (const [what, edit, key, why] of cases) {
    it(what, () => {
      const cfg = base();
      edit(cfg);
      const file = writeConfig(stringify(cfg));
      const p = problemsOf(file);
      expect(p).toHaveLength(1);
      const line = p[0] ?? '';
      expect(line.startsWith(`config ${file}: ${key}: `)).toBe(true);
      expect(line).toMatch(why);
      expect(line).toMatch(/\(line \d+\)$/);
    });
  }

  it('lists every problem of a file at once, at its line', () => {
    const text = [
      `repo: ${repo}`,
      'datastores:',
      `  - { name: ds1, path: ${ds1} }`,
      'schedules:',
      '  - name: a',
      '    kind: backup',
      '    cron: "0 1 * * *"',
      '  - name: b',
      '    kind: check',
      '    cron: "61 * * * *"',
      'log: { level: loud }',
      'ship: { keep: 0 }',
      'api: { token: "a-long-enough-token-0123456789", listen: nowhere }',
      'colour: blue',
    ].join('\n');
    const file = writeConfig(text);
    expect(problemsOf(file)).toEqual([
      `config ${file}: colour: unknown key (known keys: repo, target, datastores, schedules, retention, throttle, api, restoreRoots, log, ship, threads) (line 14)`,
      `config ${file}: schedules[1].cron: "61 * * * *" is not a cron expression (minute 61 out of range 0–59) (line 10)`,
      `config ${file}: api.listen: "nowhere" is not host:port (like 127.0.0.1:8470 or [::1]:8470; port 1 to 65535) (line 13)`,
      `config ${file}: log.level: "loud" is not a log level (fatal, error, warn, info, debug, trace) (line 11)`,
      `config ${file}: ship.keep: 0 is out of range: must be a whole number from 1 to 10000 (line 12)`,
    ]);
    // a refused config writes nothing: no token was generated
    expect(() => statSync(join(repo, 'api-token'))).toThrow();
  });

  it('YAML errors give their line; duplicate keys and alias bombs are refused', () => {
    const f1 = writeConfig('repo: /x\ndatastores: [\n');
    expect(problemsOf(f1)[0]).toMatch(new RegExp(`^config ${f1}: line \\d+: `));
    const f2 = writeConfig(`repo: ${repo}\nlog: { level: info }\nrepo: /y\n`);
    expect(problemsOf(f2)).toEqual([expect.stringMatching(/line 3: Map keys must be unique/)]);
    const bomb = [
      'a: &a [x, x, x, x, x, x, x, x, x, x]',
      'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]',
      'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]',
      'd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]',
    ].join('\n');
    expect(problemsOf(writeConfig(bomb))).toEqual([expect.stringMatching(/cannot be expanded: Excessive alias count/)]);
    const f4 = writeConfig(`repo: ${repo}\nschedules:\n  - { name: a, kind: ship, cron: * * * * * }\n`);
    expect(problemsOf(f4)).toEqual([
      `config ${f4}: line 3: Alias cannot be an empty string (quote a value that starts with '*' or '&', as in cron: '* * * * *')`,
    ]);
    const f3 = writeConfig('- just\n- a list\n');
    expect(problemsOf(f3)[0]).toMatch(/^config .*: must be a mapping of repo, target/);
  });

  it('a file that cannot be read is a typed error of its own', () => {
    const missing = join(tmp, 'missing.yaml');
    expect(() => loadConfig(missing, {})).toThrow(expect.objectContaining({ code: 'CONFIG_NOT_FOUND' }));
    expect(() => loadConfig(tmp, {})).toThrow(expect.objectContaining({ code: 'CONFIG_NOT_FILE' }));
    const big = writeConfig(`# ${'x'.repeat(MAX_CONFIG_FILE_BYTES)}\n`);
    expect(() => loadConfig(big, {})).toThrow(expect.objectContaining({ code: 'CONFIG_TOO_LARGE' }));
  });
});

describe('the API token', () => {
  function withTokenFile(content: string, perm: number): { file: string; token: string } | string[] {
    const tf = join(tmp, `token${++n}`);
    writeFileSync(tf, content);
    chmodSync(tf, perm);
    const cfg = base();
    cfg.api = { tokenFile: tf };
    const file = writeConfig(stringify(cfg));
    try {
      return { file: tf, token: loadConfig(file, {}).api.token };
    } catch {
      return problemsOf(file);
    }
  }

  it('is read from a file only its owner can read', () => {
    expect(withTokenFile('  from-the-token-file-0123\n', 0o600)).toMatchObject({ token: 'from-the-token-file-0123' });
    expect(withTokenFile('from-the-token-file-0123', 0o400)).toMatchObject({ token: 'from-the-token-file-0123' });
  });

  it('a token file group or others may read or write is refused with how to fix it', () => {
    for (const perm of [0o644, 0o640, 0o604, 0o620, 0o602]) {
      const p = withTokenFile('from-the-token-file-0123', perm);
      expect(Array.isArray(p)).toBe(true);
      const line = (p as string[])[0] ?? '';
      expect(line).toMatch(/api\.tokenFile: .* has mode 0\d{3}: group or others may read or change the API token/);
      expect(line).toMatch(/chmod 600/);
    }
  });

  it('a token file holding too short a token or a folder is refused', () => {
    expect(withTokenFile('short\n', 0o600)).toEqual([
      expect.stringMatching(/api\.tokenFile: the token in .* needs at least 16/),
    ]);
    const cfg = base();
    cfg.api = { tokenFile: tmp };
    expect(problemsOf(writeConfig(stringify(cfg)))).toEqual([
      expect.stringMatching(/api\.tokenFile: .* is not a regular file/),
    ]);
  });

  it('is generated once into <repo>/api-token, reused, and refused when that file is made readable to others', () => {
    const cfg = base();
    cfg.api = {};
    const file = writeConfig(stringify(cfg));
    const first = loadConfig(file, {});
    const stored = join(String(cfg.repo), 'api-token');
    expect(mode(stored)).toBe(0o600);
    expect(loadConfig(file, {}).api.token).toBe(first.api.token);
    chmodSync(stored, 0o644);
    expect(problemsOf(file)).toEqual([
      expect.stringMatching(/api\.token: none given, and the generated one cannot be used: .*api-token has mode 0644/),
    ]);
  });
});
