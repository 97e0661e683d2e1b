/**
 * Protection groups and recovery plans (issue 7 §4), stored in the catalog so
 * they are shipped with it: a lost controller loses no plan.
 *
 * A group names a set of VMs — listed ones, and every VM discovered on listed
 * datastores — and which of them are critical (restored first). A plan is an
 * ordered list of steps, one group each, and what to do when a step fails.
 * Definitions are JSON in `protection_groups` / `recovery_plans`; membership is
 * resolved when a plan runs, so a VM added to a datastore later is included.
 */
import type { Catalog } from './catalog.js';

export const MAX_NAME_CHARS = 64;
export const MAX_GROUP_MEMBERS = 10_000;
export const MAX_PLAN_STEPS = 1_000;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export type OnFailure = 'continue' | 'stop';

export interface GroupDefinition {
  /** VM names or identities. */
  vms: string[];
  /** Datastore names (as discovery records them) or absolute datastore folders. */
  datastores: string[];
  /** Members restored before the others, in this order. */
  critical: string[];
}

export interface PlanStep {
  group: string;
  onFailure: OnFailure;
}

export interface PlanDefinition {
  steps: PlanStep[];
}

export interface Named<T> {
  name: string;
  definition: T;
  updatedMs: number;
}

/** A definition the catalog refuses (bad name, unknown group, too many members). */
export class PlanDefinitionError extends Error {
  override name = 'PlanDefinitionError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

type Row = { name: string; definition: string; updated_ms: number | bigint };

const GROUPS = 'protection_groups';
const PLANS = 'recovery_plans';
type Table = typeof GROUPS | typeof PLANS;

export function checkName(kind: string, name: string): void {
  if (name.length === 0 || name.length > MAX_NAME_CHARS || !NAME_RE.test(name)) {
    throw new PlanDefinitionError(
      'PLAN_BAD_NAME',
      `${kind} name '${name}' must be 1–${MAX_NAME_CHARS} letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
}

function checkList(what: string, list: unknown, max: number): string[] {
  if (!Array.isArray(list) || list.some((x) => typeof x !== 'string' || x.length === 0 || x.length > 4096)) {
    throw new PlanDefinitionError('PLAN_BAD_LIST', `${what} must be a list of non-empty names`);
  }
  if (list.length > max)
    throw new PlanDefinitionError('PLAN_TOO_MANY', `${what}: ${list.length} entries, at most ${max}`);
  return [...new Set(list as string[])];
}

export function validateGroup(name: string, d: GroupDefinition): GroupDefinition {
  checkName('group', name);
  const vms = checkList(`group ${name}: vms`, d.vms, MAX_GROUP_MEMBERS);
  const datastores = checkList(`group ${name}: datastores`, d.datastores, MAX_GROUP_MEMBERS);
  const critical = checkList(`group ${name}: critical`, d.critical, MAX_GROUP_MEMBERS);
  if (vms.length === 0 && datastores.length === 0) {
    throw new PlanDefinitionError('PLAN_EMPTY_GROUP', `group ${name} names no VM and no datastore`);
  }
  return { vms, datastores, critical };
}

function toNamed<T>(r: Row): Named<T> {
  return { name: r.name, definition: JSON.parse(r.definition) as T, updatedMs: Number(r.updated_ms) };
}

export class PlanStore {
  constructor(private readonly cat: Catalog) {}

  setGroup(name: string, d: GroupDefinition, nowMs = Date.now()): Named<GroupDefinition> {
    return this.put(GROUPS, name, validateGroup(name, d), nowMs);
  }

  group(name: string): Named<GroupDefinition> | undefined {
    return this.get<GroupDefinition>(GROUPS, name);
  }

  groups(): Named<GroupDefinition>[] {
    return this.all<GroupDefinition>(GROUPS);
  }

  /** Refused while a plan uses the group. */
  removeGroup(name: string): boolean {
    const users = this.plans().filter((p) => p.definition.steps.some((s) => s.group === name));
    if (users.length > 0) {
      throw new PlanDefinitionError(
        'PLAN_GROUP_IN_USE',
        `group ${name} is used by plan(s) ${users.map((p) => p.name).join(', ')}; change or remove them first`,
      );
    }
    return this.remove(GROUPS, name);
  }

  setPlan(name: string, d: PlanDefinition, nowMs = Date.now()): Named<PlanDefinition> {
    checkName('plan', name);
    if (!Array.isArray(d.steps) || d.steps.length === 0) {
      throw new PlanDefinitionError('PLAN_NO_STEPS', `plan ${name} has no steps`);
    }
    if (d.steps.length > MAX_PLAN_STEPS) {
      throw new PlanDefinitionError(
        'PLAN_TOO_MANY',
        `plan ${name}: ${d.steps.length} steps, at most ${MAX_PLAN_STEPS}`,
      );
    }
    const steps = d.steps.map((s, i) => {
      if (!this.group(s.group)) {
        throw new PlanDefinitionError(
          'PLAN_UNKNOWN_GROUP',
          `plan ${name}: step ${i + 1} names group '${s.group}', which does not exist`,
        );
      }
      if (s.onFailure !== 'continue' && s.onFailure !== 'stop') {
        throw new PlanDefinitionError(
          'PLAN_BAD_STEP',
          `plan ${name}: step ${i + 1}: on failure must be 'continue' or 'stop'`,
        );
      }
      return { group: s.group, onFailure: s.onFailure };
    });
    return this.put<PlanDefinition>(PLANS, name, { steps }, nowMs);
  }

  plan(name: string): Named<PlanDefinition> | undefined {
    return this.get<PlanDefinition>(PLANS, name);
  }

  plans(): Named<PlanDefinition>[] {
    return this.all<PlanDefinition>(PLANS);
  }

  removePlan(name: string): boolean {
    return this.remove(PLANS, name);
  }

  // one table shape for both: name, JSON definition, time of the last change

  private put<T>(table: Table, name: string, definition: T, nowMs: number): Named<T> {
    this.cat.db
      .prepare(
        `INSERT INTO ${table}(name, definition, updated_ms) VALUES (?, ?, ?)
           ON CONFLICT(name) DO UPDATE SET definition = excluded.definition, updated_ms = excluded.updated_ms`,
      )
      .run(name, JSON.stringify(definition), nowMs);
    return { name, definition, updatedMs: nowMs };
  }

  private get<T>(table: Table, name: string): Named<T> | undefined {
    const r = this.cat.db.prepare(`SELECT * FROM ${table} WHERE name = ?`).get(name) as Row | undefined;
    return r ? toNamed<T>(r) : undefined;
  }

  private all<T>(table: Table): Named<T>[] {
    return (this.cat.db.prepare(`SELECT * FROM ${table} ORDER BY name`).all() as Row[]).map((r) => toNamed<T>(r));
  }

  private remove(table: Table, name: string): boolean {
    return this.cat.db.prepare(`DELETE FROM ${table} WHERE name = ?`).run(name).changes > 0;
  }

  /**
   * The group's VMs, critical ones first (in their listed order), then the
   * rest by name. A listed name that matches no VM is returned in `unknown`.
   */
  members(name: string): {
    vms: { id: number; name: string; identity: string; critical: boolean }[];
    unknown: string[];
  } {
    const g = this.group(name);
    if (!g) throw new PlanDefinitionError('PLAN_UNKNOWN_GROUP', `no protection group '${name}'`);
    const all = this.cat.db
      .prepare('SELECT id, identity, name, datastore, config_path FROM vms ORDER BY name, id')
      .all() as {
      id: number | bigint;
      identity: string;
      name: string;
      datastore: string | null;
      config_path: string | null;
    }[];
    const picked = new Map<number, { id: number; name: string; identity: string; critical: boolean }>();
    const unknown: string[] = [];
    const add = (r: (typeof all)[number]) =>
      picked.set(Number(r.id), { id: Number(r.id), name: r.name, identity: r.identity, critical: false });
    for (const want of g.definition.vms) {
      const hits = all.filter((r) => r.name === want || r.identity === want);
      if (hits.length === 0) unknown.push(want);
      hits.forEach(add);
    }
    for (const ds of g.definition.datastores) {
      const prefix = ds.endsWith('/') ? ds : `${ds}/`;
      for (const r of all) {
        if (r.datastore === ds || (ds.startsWith('/') && r.config_path?.startsWith(prefix))) add(r);
      }
    }
    const members = [...picked.values()];
    const rank = new Map<number, number>();
    g.definition.critical.forEach((c, i) => {
      for (const m of members) if ((m.name === c || m.identity === c) && !rank.has(m.id)) rank.set(m.id, i);
    });
    for (const m of members) m.critical = rank.has(m.id);
    members.sort((a, b) => {
      const ra = rank.get(a.id) ?? Infinity;
      const rb = rank.get(b.id) ?? Infinity;
      if (ra !== rb) return ra - rb;
      return a.name < b.name ? -1 : a.name > b.name ? 1 : a.id - b.id;
    });
    return { vms: members, unknown };
  }
}
