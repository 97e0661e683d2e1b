/** Health (no token: load balancers and `vdbak status` probe it), status, and the OpenAPI document. */
import { VERSION } from '../../version.js';
import { openApiDocument } from '../openapi.js';
import type { Route } from '../router.js';
import { ok } from './common.js';

export const metaRoutes: Route[] = [
  { method: 'GET', path: '/health', auth: false, handle: () => ok({ ok: true, version: VERSION }) },
  { method: 'GET', path: '/openapi.json', auth: false, handle: () => ok(openApiDocument()) },
  { method: 'GET', path: '/status', auth: true, handle: ({ ctx }) => ok(ctx.status()) },
];
