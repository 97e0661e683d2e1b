/**
 * The OpenAPI document and the route table are written separately; this walks
 * both and fails when either has a route, parameter or body field the other
 * lacks, or when they disagree on what needs the token.
 */
import { describe, expect, it } from 'vitest';
import { openApiDocument } from '../../agent/api/openapi.js';
import { ROUTES } from '../../agent/api/routes.js';

type Json = Record<string, unknown>;
const doc = openApiDocument() as {
  openapi: string;
  paths: Record<string, Record<string, Json>>;
  components: { schemas: Record<string, Json> };
  security: unknown[];
};
const METHODS = ['get', 'post', 'put', 'patch', 'delete', 'head', 'options'];

function deref(s: Json): Json {
  const r = s.$ref as string | undefined;
  if (!r) return s;
  const name = r.replace('#/components/schemas/', '');
  const hit = doc.components.schemas[name];
  if (!hit) throw new Error(`unresolved $ref ${r}`);
  return hit;
}

describe('OpenAPI document', () => {
  it('is OpenAPI 3.1 and every $ref resolves', () => {
    expect(doc.openapi).toMatch(/^3\.1\./);
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThan(10);
    for (const r of refs) expect(() => deref({ $ref: r }), r).not.toThrow();
  });

  it('has exactly the routes of the router', () => {
    const inDoc = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops)
        .filter((m) => METHODS.includes(m))
        .map((m) => `${m.toUpperCase()} ${path}`),
    );
    const inRouter = ROUTES.map((r) => `${r.method} ${r.path}`);
    expect(new Set(inRouter).size).toBe(inRouter.length);
    expect([...inDoc].sort()).toEqual([...inRouter].sort());
  });

  for (const route of ROUTES) {
    it(`${route.method} ${route.path}: parameters, body, security and errors agree`, () => {
      const op = doc.paths[route.path]![route.method.toLowerCase()] as Json;
      const params = (op.parameters as { name: string; in: string; required?: boolean }[] | undefined) ?? [];
      const pathParams = [...route.path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]!);
      expect(params.filter((p) => p.in === 'path').map((p) => p.name)).toEqual(pathParams);
      for (const p of params.filter((x) => x.in === 'path')) expect(p.required).toBe(true);
      const query = route.query ?? {};
      const docQuery = params.filter((p) => p.in === 'query');
      expect(docQuery.map((p) => p.name).sort()).toEqual(Object.keys(query).sort());
      for (const p of docQuery) expect(p.required ?? false, p.name).toBe(query[p.name]!.required ?? false);
      expect(params.every((p) => p.in === 'path' || p.in === 'query')).toBe(true);

      const rb = op.requestBody as { content: Record<string, { schema: Json }> } | undefined;
      expect(rb !== undefined, 'requestBody').toBe(route.body !== undefined);
      if (rb && route.body) {
        const schema = deref(rb.content['application/json']!.schema);
        expect(Object.keys(schema.properties as Json).sort()).toEqual(Object.keys(route.body).sort());
        const required = Object.entries(route.body)
          .filter(([, s]) => s.required)
          .map(([k]) => k);
        expect(((schema.required as string[] | undefined) ?? []).sort()).toEqual(required.sort());
        for (const [k, s] of Object.entries(route.body)) {
          expect(((schema.properties as Record<string, Json>)[k]!.type as string) ?? '', k).toBe(s.type);
        }
      }

      const responses = op.responses as Record<string, Json>;
      if (route.auth) {
        expect(op.security).toBeUndefined(); // the document's default: bearer
        expect(responses['401']).toBeDefined();
      } else expect(op.security).toEqual([]);
      for (const [code, r] of Object.entries(responses)) {
        if (Number(code) < 400) continue;
        const schema = (r.content as Record<string, { schema: Json }>)['application/json']!.schema;
        expect(schema, `${code} uses the error shape`).toEqual({ $ref: '#/components/schemas/Error' });
      }
      expect(Object.keys(responses).some((c) => c.startsWith('2'))).toBe(true);
    });
  }
});
