/**
 * What every file's planner shares: the options, where files went, the names
 * of files named after the VM, and the plan's warnings.
 */
import { errorsFor } from '../../../parsers/errors.js';
import { baseName, PathContext } from './paths.js';
import type { PatchChange, PatchOptions } from './types.js';

/** Longest VM name we turn into file names (VMware caps display names at 80; file names at 255 bytes). */
export const MAX_NAME_CHARS = 200;

export interface PlanContext {
  opts: Readonly<PatchOptions>;
  paths: PathContext;
  /** Old base name → new base name of configuration and state files named after the VM. */
  fileRenames: Map<string, string>;
  warnings: string[];
}

/** Records a change (the planner's one way to say what it did). */
export function change(
  changes: PatchChange[],
  file: string,
  field: string,
  old: string | null,
  value: string | null,
  why: string,
): void {
  changes.push({ file: baseName(file), field, old, new: value, why });
}

/**
 * The VM's new name as a file base name: path separators and control
 * characters become '_' (the display name keeps them).
 */
export function fileBaseFor(name: string, image: string): string {
  const err = errorsFor({ image, layer: 'restore' });
  const base = name.replace(/[/\\\x00-\x1f\x7f]/g, '_').trim();
  if (base === '' || base === '.' || base === '..' || [...name].length > MAX_NAME_CHARS) {
    throw err.corrupt('PATCH_FIELD', `the new VM name ${JSON.stringify(name)} cannot name files`, { field: 'name' });
  }
  return base;
}
