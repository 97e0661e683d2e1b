/** The file patcher of a whole-VM restore (issue 7 §3): plan, show, apply. */
export { applyPatch, patchFolder, recoverPatch, type ApplyOptions, type ApplyResult, type PatchStep } from './apply.js';
export { formatPlan, planJson, type PatchPlanJson } from './format.js';
export { planPatch } from './plan.js';
export type * from './types.js';
