/**
 * Where a restore job may write (agent/daemon/executors/restore-target.ts):
 * inside a configured restore root once every symlink on the way is followed,
 * folders that do not exist yet included; nothing else.
 */
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveRestoreTarget } from '../../agent/daemon/executors/restore-target.js';

let base: string;
let root: string;
let other: string;
let outside: string;

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

beforeAll(() => {
  base = realpathSync(mkdtempSync(join(tmpdir(), 'vdbak-restore-target-')));
  root = join(base, 'restores');
  other = join(base, 'second-root');
  outside = join(base, 'outside');
  for (const d of [root, other, outside, join(root, 'made')]) mkdirSync(d, { recursive: true });
  symlinkSync(outside, join(root, 'out-link'));
  symlinkSync(join(root, 'made'), join(root, 'in-link'));
  symlinkSync(join(root, 'nowhere'), join(root, 'dangling'));
  symlinkSync(join(root, 'loop'), join(root, 'loop'));
  // a root given through a symlink is compared by its real path
  symlinkSync(other, join(base, 'root-link'));
});

afterAll(() => rmSync(base, { recursive: true, force: true }));

describe('resolveRestoreTarget', () => {
  const roots = () => [root, join(base, 'root-link')];

  it('accepts a root, folders below it, and folders that do not exist yet', () => {
    expect(resolveRestoreTarget(root, roots())).toBe(root);
    expect(resolveRestoreTarget(join(root, 'made'), roots())).toBe(join(root, 'made'));
    expect(resolveRestoreTarget(join(root, 'new', 'deeper'), roots())).toBe(join(root, 'new', 'deeper'));
    expect(resolveRestoreTarget(join(other, 'x'), roots())).toBe(join(other, 'x'));
    expect(resolveRestoreTarget(join(base, 'root-link', 'x'), roots())).toBe(join(other, 'x'));
  });

  it('follows symlinks: one that stays inside is fine, one that leaves is refused', () => {
    expect(resolveRestoreTarget(join(root, 'in-link', 'a'), roots())).toBe(join(root, 'made', 'a'));
    expect(codeOf(() => resolveRestoreTarget(join(root, 'out-link'), roots()))).toBe('RESTORE_TO_OUTSIDE_ROOTS');
    expect(codeOf(() => resolveRestoreTarget(join(root, 'out-link', 'a', 'b'), roots()))).toBe(
      'RESTORE_TO_OUTSIDE_ROOTS',
    );
  });

  it('refuses what is outside, relative, dotted, dangling or looping, and refuses all without roots', () => {
    expect(codeOf(() => resolveRestoreTarget(outside, roots()))).toBe('RESTORE_TO_OUTSIDE_ROOTS');
    expect(codeOf(() => resolveRestoreTarget(`${root}-sibling`, roots()))).toBe('RESTORE_TO_OUTSIDE_ROOTS');
    expect(codeOf(() => resolveRestoreTarget(base, roots()))).toBe('RESTORE_TO_OUTSIDE_ROOTS');
    expect(codeOf(() => resolveRestoreTarget(join(root, 'a', '..', '..', 'outside'), roots()))).toBe(
      'RESTORE_TO_OUTSIDE_ROOTS',
    );
    expect(codeOf(() => resolveRestoreTarget(`${root}/a/../b`, roots()))).toBe('RESTORE_TO_OUTSIDE_ROOTS');
    expect(codeOf(() => resolveRestoreTarget('restores/x', roots()))).toBe('RESTORE_TO_NOT_ABSOLUTE');
    expect(codeOf(() => resolveRestoreTarget(`${root}/a\0b`, roots()))).toBe('RESTORE_TO_BAD');
    expect(codeOf(() => resolveRestoreTarget(join(root, 'dangling', 'x'), roots()))).toBe('RESTORE_TO_UNRESOLVABLE');
    expect(codeOf(() => resolveRestoreTarget(join(root, 'loop', 'x'), roots()))).toBe('RESTORE_TO_UNRESOLVABLE');
    expect(codeOf(() => resolveRestoreTarget(join(root, 'x'), []))).toBe('RESTORE_TO_OUTSIDE_ROOTS');
  });
});
