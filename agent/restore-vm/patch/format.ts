/** The patch plan for people (`restore-vm --dry-run`) and for programs (`--json`). */
import { basename } from 'node:path';
import type { PatchFileKind, PatchPlan } from './types.js';

export interface PatchPlanJson {
  folder: string;
  files: {
    file: string;
    kind: PatchFileKind;
    renameTo?: string;
    /** An embedded descriptor rewritten in place: where, how many bytes. */
    inPlace?: { offset: number; length: number };
    changes: { field: string; old: string | null; new: string | null; why: string }[];
  }[];
  renames: { from: string; to: string; why: string }[];
  warnings: string[];
}

export function planJson(plan: PatchPlan): PatchPlanJson {
  return {
    folder: plan.folder,
    files: plan.files.map((f) => ({
      file: basename(f.path),
      kind: f.kind,
      ...(f.renameTo ? { renameTo: basename(f.renameTo) } : {}),
      ...(f.inPlace ? { inPlace: { offset: f.inPlace.offset, length: f.inPlace.bytes.length } } : {}),
      changes: f.changes.map((c) => ({ field: c.field, old: c.old, new: c.new, why: c.why })),
    })),
    renames: plan.renames.map((r) => ({ from: basename(r.from), to: basename(r.to), why: r.why })),
    warnings: [...plan.warnings],
  };
}

const show = (v: string | null) => (v === null ? '(removed)' : JSON.stringify(v));

export function formatPlan(plan: PatchPlan): string {
  const out: string[] = [];
  if (plan.files.length === 0 && plan.renames.length === 0) out.push(`nothing to patch in ${plan.folder}`);
  for (const f of plan.files) {
    const head = `${basename(f.path)} (${f.kind})${f.renameTo ? ` → ${basename(f.renameTo)}` : ''}`;
    out.push(f.inPlace ? `${head}, descriptor rewritten in place at byte ${f.inPlace.offset}:` : `${head}:`);
    for (const c of f.changes) out.push(`  ${c.field}: ${show(c.old)} → ${show(c.new)}  (${c.why})`);
  }
  for (const r of plan.renames) out.push(`${basename(r.from)} → ${basename(r.to)}  (${r.why})`);
  for (const w of plan.warnings) out.push(`warning: ${w}`);
  return out.join('\n');
}
