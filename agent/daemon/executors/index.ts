/** Which executor runs each job kind. */
import type { JobKind } from '../types.js';
import { runBackup } from './backup.js';
import type { Executor } from './context.js';
import { runCheck, runForget, runPrune } from './maint.js';
import { runPlanJob } from './plan.js';
import { runRestore } from './restore.js';
import { runRestoreVm } from './restore-vm.js';
import { runShip } from './ship.js';

export const EXECUTORS: Readonly<Record<JobKind, Executor>> = {
  restore: runRestore,
  'restore-vm': runRestoreVm,
  plan: runPlanJob,
  backup: runBackup,
  ship: runShip,
  forget: runForget,
  prune: runPrune,
  check: runCheck,
};
