/**
 * The OpenAPI 3.1 document served at /openapi.json, built from the routes as they are registered:
 * their validation schemas (params, querystring, body) are the parameter definitions, so the
 * document cannot drift from what the server enforces. Routes add `summary`, `tags` and
 * `x-responses` to their schema for the prose parts.
 */
import type { RouteOptions } from 'fastify';

interface DocSchema {
  summary?: string;
  description?: string;
  tags?: string[];
  params?: { properties?: Record<string, object>; required?: string[] };
  querystring?: { properties?: Record<string, object & { description?: string }>; required?: string[] };
  body?: object;
  'x-responses'?: Record<string, { description: string; schema?: object }>;
  hide?: boolean;
}

const ERROR_SCHEMA = {
  type: 'object',
  required: ['code', 'message'],
  properties: { code: { type: 'string', pattern: '^EDGETWIN_ERR_[A-Z_]+$' }, message: { type: 'string' }, details: { type: 'object' } },
};

export class OpenApiCollector {
  private readonly paths: Record<string, Record<string, unknown>> = {};

  add(route: RouteOptions): void {
    const schema = (route.schema ?? {}) as DocSchema;
    if (schema.hide || route.url === '*') return;
    const methods = (Array.isArray(route.method) ? route.method : [route.method]).filter((m) => m !== 'HEAD');
    const path = route.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    const action = route.config?.action;
    const parameters: object[] = [];
    for (const [name, s] of Object.entries(schema.params?.properties ?? {}))
      parameters.push({ name, in: 'path', required: true, schema: s });
    for (const [name, s] of Object.entries(schema.querystring?.properties ?? {})) {
      const { description, ...rest } = s as { description?: string; default?: unknown };
      parameters.push({
        name,
        in: 'query',
        // A parameter with a default is filled in by validation: the caller may leave it out.
        required: (schema.querystring?.required?.includes(name) ?? false) && rest.default === undefined,
        schema: rest,
        ...(description ? { description } : {}),
      });
    }
    const responses: Record<string, object> = {};
    for (const [status, r] of Object.entries(schema['x-responses'] ?? { 200: { description: 'OK' } })) {
      responses[status] = { description: r.description, ...(r.schema ? { content: { 'application/json': { schema: r.schema } } } : {}) };
    }
    responses['default'] = { description: 'Error', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
    for (const m of methods) {
      (this.paths[path] ??= {})[m.toLowerCase()] = {
        summary: schema.summary,
        ...(schema.description ? { description: schema.description } : {}),
        ...(schema.tags ? { tags: schema.tags } : {}),
        ...(action ? { security: [{ bearer: [] }], 'x-edgetwin-action': action } : { security: [] }),
        parameters,
        ...(schema.body ? { requestBody: { required: true, content: { 'application/json': { schema: schema.body } } } } : {}),
        responses,
      };
    }
  }

  document(): object {
    return {
      openapi: '3.1.0',
      info: {
        title: 'edgetwin cloud API',
        version: '1',
        description:
          'Ingest from site collectors, the desired-state feed, and the twin API for operators. Errors are `{code, message}` with a stable EDGETWIN_ERR_* code. ' +
          'Roles: viewer (read), operator (read, change desired and tags), admin (everything), collector (ingest and desired feed of its site); a site-scoped token sees only its site.',
      },
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
        schemas: { Error: ERROR_SCHEMA },
      },
      paths: this.paths,
    };
  }
}
