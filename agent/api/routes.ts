/** Every route of the API, in one table (the OpenAPI coverage test walks it). */
import type { Route } from './router.js';
import { backupRoutes } from './routes/backups.js';
import { downloadRoutes } from './routes/download.js';
import { jobRoutes } from './routes/jobs.js';
import { metaRoutes } from './routes/meta.js';
import { restoreRoutes } from './routes/restores.js';
import { searchRoutes } from './routes/search.js';
import { vmRoutes } from './routes/vms.js';

export const ROUTES: readonly Route[] = Object.freeze([
  ...metaRoutes,
  ...vmRoutes,
  ...backupRoutes,
  ...downloadRoutes,
  ...searchRoutes,
  ...restoreRoutes,
  ...jobRoutes,
]);
