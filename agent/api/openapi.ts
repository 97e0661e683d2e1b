/**
 * The API's OpenAPI 3.1 document, served at GET /openapi.json. Written by
 * hand (descriptions, schemas, responses); test/api/openapi.test.ts walks the
 * route table and this document and fails when a route, parameter or body
 * field is in one and not the other.
 */
import { DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT } from '../browse/page.js';
import { MAX_PATTERN_LENGTH } from '../browse/search.js';
import { JOB_PRIORITY } from '../daemon/types.js';
import { VERSION } from '../version.js';
import { MAX_BODY_BYTES } from './body.js';

type Json = Record<string, unknown>;

const ref = (name: string): Json => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: Json, description: string): Json => ({
  description,
  content: { 'application/json': { schema } },
});
const error = (description: string): Json => json(ref('Error'), description);

const page = (item: Json): Json => ({
  type: 'object',
  required: ['items', 'offset', 'limit'],
  properties: {
    items: { type: 'array', items: item },
    offset: { type: 'integer' },
    limit: { type: 'integer' },
    nextOffset: { type: 'integer', description: 'Offset of the next page; absent on the last page.' },
  },
});

const q = (name: string, schema: Json, description: string, required = false): Json => ({
  name,
  in: 'query',
  required,
  description,
  schema,
});
const p = (name: string, description: string): Json => ({
  name,
  in: 'path',
  required: true,
  description,
  schema: { type: 'string' },
});

const PAGE = [
  q('offset', { type: 'integer', minimum: 0 }, "Rows to skip (the previous page's nextOffset)."),
  q(
    'limit',
    { type: 'integer', minimum: 1, maximum: MAX_PAGE_LIMIT, default: DEFAULT_PAGE_LIMIT },
    `Rows per page (at most ${MAX_PAGE_LIMIT}).`,
  ),
];
const REF = p('ref', 'A backup: its id, a VM name (its latest complete backup) or VM~N (N before the latest).');
const VM_Q = (required: boolean) => q('vm', { type: 'string' }, 'A VM: its name, identity or catalog id.', required);

const E400 = error('Bad request: a malformed or unknown parameter or field, a bad pattern or path.');
const E401 = error('No token or a wrong token (WWW-Authenticate: Bearer).');
const E404 = error('No such VM, backup, path or job.');
const E409 = error('Conflict: an ambiguous name, a repository lock held, a job already finished.');
const E500 = error('The server failed (details in the daemon log, never in the answer).');
const COMMON_ERRORS = { '400': E400, '401': E401, '500': E500 };

const JOB_STATES = ['queued', 'running', 'done', 'failed', 'cancelled'];

const SCHEMAS: Json = {
  Error: {
    type: 'object',
    required: ['error'],
    properties: {
      error: {
        type: 'object',
        required: ['code', 'message'],
        properties: {
          code: {
            type: 'string',
            description: 'Stable, SCREAMING_SNAKE_CASE (VM_NOT_FOUND, BAD_PARAM, UNAUTHORIZED…).',
          },
          message: { type: 'string' },
        },
      },
    },
  },
  Health: { type: 'object', properties: { ok: { type: 'boolean' }, version: { type: 'string' } } },
  Status: {
    type: 'object',
    description: 'The daemon: throttle state per datastore, schedules with next/last runs, running jobs, last results.',
    properties: {
      pid: { type: 'integer' },
      version: { type: 'string' },
      startedMs: { type: 'integer' },
      configSource: { type: 'string' },
      throttle: { type: 'array', items: { type: 'object' } },
      schedules: { type: 'array', items: { type: 'object' } },
      running: { type: 'array', items: ref('Job') },
      queued: { type: 'integer' },
      lastResults: { type: 'array', items: ref('Job') },
    },
  },
  Vm: {
    type: 'object',
    properties: {
      id: { type: 'integer' },
      identity: { type: 'string', description: 'uuid.bios / vc.uuid, or the disk path for a loose image.' },
      name: { type: 'string' },
      kind: { type: 'string' },
      configPath: { type: ['string', 'null'] },
      datastore: { type: ['string', 'null'] },
      present: {
        type: 'boolean',
        description: 'False once discovery no longer finds it; its backups stay restorable.',
      },
      vanishedMs: { type: ['integer', 'null'] },
      firstSeenMs: { type: 'integer' },
      lastSeenMs: { type: 'integer' },
      backups: { type: 'integer', description: 'Complete backups.' },
      lastBackup: {
        type: ['object', 'null'],
        properties: {
          id: { type: 'integer' },
          startedMs: { type: 'integer' },
          finishedMs: { type: ['integer', 'null'] },
        },
      },
    },
  },
  VmDisks: {
    type: 'object',
    properties: {
      vm: { type: 'object' },
      backup: { type: ['integer', 'null'], description: 'The backup the disks are described from (the latest).' },
      disks: { type: 'array', items: { type: 'object' } },
    },
  },
  Backup: {
    type: 'object',
    properties: {
      id: { type: 'integer' },
      vmId: { type: 'integer' },
      vmName: { type: 'string' },
      state: { type: 'string', enum: ['running', 'complete', 'failed'] },
      startedMs: { type: 'integer' },
      finishedMs: { type: ['integer', 'null'] },
      stats: { type: ['object', 'null'] },
      error: { type: ['string', 'null'] },
    },
  },
  BackupDetail: {
    allOf: [
      ref('Backup'),
      {
        type: 'object',
        properties: {
          disks: { type: 'array', items: { type: 'object' } },
          volumes: { type: 'array', items: { type: 'object' } },
        },
      },
    ],
  },
  Entry: {
    type: 'object',
    description: 'A file, folder, link… of a backup (as `vdbak ls --json`), or a volume of its root (type "volume").',
    properties: {
      path: { type: 'string', description: '/<volume>/<path in the volume>' },
      type: { type: 'string' },
      size: { type: 'integer' },
      mode: { type: 'integer' },
      uid: { type: 'integer' },
      gid: { type: 'integer' },
      mtime: { type: 'string', description: 'ISO-8601 UTC with nanoseconds.' },
      linkTarget: { type: 'string' },
      streams: {
        type: 'array',
        items: { type: 'object', properties: { name: { type: 'string' }, size: { type: 'integer' } } },
      },
      meta: { type: 'object' },
      firstBackup: { type: 'integer', description: 'The first backup holding this version.' },
    },
  },
  Tree: {
    allOf: [
      page(ref('Entry')),
      { type: 'object', properties: { backup: { type: 'integer' }, path: { type: 'string' } } },
    ],
  },
  SearchHit: {
    allOf: [
      ref('Entry'),
      {
        type: 'object',
        properties: {
          vm: { type: 'string' },
          backups: { type: 'array', items: { type: 'integer' }, description: 'Complete backups holding it.' },
        },
      },
    ],
  },
  Version: {
    allOf: [ref('Entry'), { type: 'object', properties: { backups: { type: 'array', items: { type: 'integer' } } } }],
  },
  Job: {
    type: 'object',
    properties: {
      id: { type: 'integer' },
      kind: { type: 'string', enum: Object.keys(JOB_PRIORITY) },
      priority: { type: 'integer', description: 'Lower runs first: restores, then backups, then maintenance.' },
      state: { type: 'string', enum: JOB_STATES },
      params: { type: 'object' },
      origin: { type: 'string' },
      createdMs: { type: 'integer' },
      startedMs: { type: 'integer' },
      finishedMs: { type: 'integer' },
      attempts: { type: 'integer' },
      cancelRequested: { type: 'boolean' },
      progress: {
        type: 'object',
        properties: {
          phase: { type: 'string' },
          bytesDone: { type: 'integer' },
          bytesTotal: { type: 'integer' },
          files: { type: 'integer' },
          current: { type: 'string' },
          updatedMs: { type: 'integer' },
        },
      },
      result: {},
      error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } } },
    },
  },
  JobList: {
    type: 'object',
    properties: { items: { type: 'array', items: ref('Job') }, limit: { type: 'integer' } },
  },
  BackupRequest: {
    type: 'object',
    required: ['vm'],
    additionalProperties: false,
    properties: { vm: { type: 'string', description: 'The VM to back up: name, identity or catalog id.' } },
  },
  RestoreRequest: {
    type: 'object',
    required: ['backup', 'path', 'to'],
    additionalProperties: false,
    properties: {
      backup: { type: 'string', description: 'A backup ref (id, VM, VM~N); the job keeps the id it resolves to now.' },
      path: { type: 'string', description: 'What to restore: /<volume>/<path>, a volume, or / for every volume.' },
      to: {
        type: 'string',
        description: 'An absolute folder inside a configured restore root (checked on real paths).',
      },
      overwrite: { type: 'boolean', default: false },
    },
  },
  VmRestoreRequest: {
    type: 'object',
    required: ['backup', 'to'],
    additionalProperties: false,
    properties: {
      backup: { type: 'string', description: 'A backup ref (id, VM, VM~N); the job keeps the id it resolves to now.' },
      to: { type: 'string', description: 'An absolute folder inside a configured restore root.' },
      name: { type: 'string', description: "The restored VM's name (default: the source's)." },
      format: { type: 'string', enum: ['vmdk-sparse', 'vmdk-flat', 'qcow2', 'raw'], description: 'Disk format.' },
      datastoreMap: {
        type: 'array',
        maxItems: 256,
        items: {
          type: 'object',
          required: ['from', 'to'],
          additionalProperties: false,
          properties: { from: { type: 'string' }, to: { type: 'string' } },
        },
        description: 'Datastore paths to rewrite in the restored configuration.',
      },
      keepIdentity: { type: 'boolean', description: 'Keep UUIDs and MAC addresses (default: new ones).' },
    },
  },
  CancelRequest: { type: 'object', additionalProperties: false, properties: {} },
};

const accepted = json(ref('Job'), 'The job was queued (Location: /jobs/{id}).');
const body = (schema: string, required = true): Json => ({
  required,
  content: { 'application/json': { schema: ref(schema) } },
});

function paths(): Json {
  return {
    '/health': {
      get: {
        operationId: 'health',
        summary: 'Liveness (no token).',
        security: [],
        responses: { '200': json(ref('Health'), 'The daemon answers.') },
      },
    },
    '/openapi.json': {
      get: {
        operationId: 'openapi',
        summary: 'This document (no token).',
        security: [],
        responses: { '200': json({ type: 'object' }, 'The OpenAPI document.') },
      },
    },
    '/status': {
      get: {
        operationId: 'status',
        summary: 'Throttle state, schedules (next and last runs), running jobs, last results.',
        responses: { '200': json(ref('Status'), 'The daemon status.'), ...COMMON_ERRORS },
      },
    },
    '/vms': {
      get: {
        operationId: 'listVms',
        summary: 'VMs known to the catalog, present or vanished, with their last backup.',
        parameters: [
          ...PAGE,
          q('present', { type: 'boolean' }, 'true: only VMs still found; false: only vanished ones.'),
        ],
        responses: { '200': json(page(ref('Vm')), 'A page of VMs.'), ...COMMON_ERRORS },
      },
    },
    '/vms/{vm}/disks': {
      get: {
        operationId: 'vmDisks',
        summary: "A VM's disks and volumes as its latest backup saw them.",
        parameters: [p('vm', 'The VM: name, identity or catalog id.')],
        responses: { '200': json(ref('VmDisks'), 'The disks.'), ...COMMON_ERRORS, '404': E404, '409': E409 },
      },
    },
    '/backups': {
      get: {
        operationId: 'listBackups',
        summary: 'Backups, oldest first.',
        parameters: [
          ...PAGE,
          VM_Q(false),
          q(
            'state',
            { type: 'string', enum: ['complete', 'running', 'failed', 'all'], default: 'complete' },
            'Backup state.',
          ),
        ],
        responses: { '200': json(page(ref('Backup')), 'A page of backups.'), ...COMMON_ERRORS, '404': E404 },
      },
      post: {
        operationId: 'startBackup',
        summary: 'Queue a backup of one VM.',
        requestBody: body('BackupRequest'),
        responses: {
          '202': accepted,
          ...COMMON_ERRORS,
          '404': E404,
          '409': E409,
          '413': error(`The body is larger than ${MAX_BODY_BYTES} bytes.`),
          '415': error('The body is not application/json.'),
        },
      },
    },
    '/backups/{ref}': {
      get: {
        operationId: 'getBackup',
        summary: 'One complete backup with its disks and volumes.',
        parameters: [REF],
        responses: { '200': json(ref('BackupDetail'), 'The backup.'), ...COMMON_ERRORS, '404': E404, '409': E409 },
      },
    },
    '/backups/{ref}/tree': {
      get: {
        operationId: 'browseBackup',
        summary: 'Browse a backup: its volumes, a folder, everything below a folder, or one entry.',
        parameters: [
          REF,
          ...PAGE,
          q(
            'path',
            { type: 'string', default: '/' },
            '/ (the volumes) or /<volume>/<path>; a volume may be named by its label.',
          ),
          q('recursive', { type: 'boolean', default: false }, 'Everything below the path.'),
        ],
        responses: { '200': json(ref('Tree'), 'A page of entries.'), ...COMMON_ERRORS, '404': E404, '409': E409 },
      },
    },
    '/backups/{ref}/download': {
      get: {
        operationId: 'download',
        summary:
          'Download a file (or a named stream, path:stream) or a tar of a folder; backups pause their reads meanwhile.',
        parameters: [
          REF,
          q('path', { type: 'string' }, '/<volume>/<path>[:stream].', true),
          q('format', { type: 'string', enum: ['file', 'tar'] }, 'Default: file for a file, tar for anything else.'),
        ],
        responses: {
          '200': {
            description:
              'The bytes (Content-Disposition: attachment with the name). A failure mid-stream cuts the connection.',
            content: {
              'application/octet-stream': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } },
              'application/x-tar': { schema: { type: 'string', contentMediaType: 'application/x-tar' } },
            },
          },
          ...COMMON_ERRORS,
          '404': E404,
          '409': E409,
        },
      },
    },
    '/search': {
      get: {
        operationId: 'search',
        summary: 'Find files across every backup (as `vdbak find`).',
        parameters: [
          ...PAGE,
          q(
            'pattern',
            { type: 'string', maxLength: MAX_PATTERN_LENGTH },
            'A glob (*, ?, [..], **; on the name when it holds no /) or a /regex/ on the full path.',
            true,
          ),
          VM_Q(false),
          q('since', { type: 'string' }, 'Modified since a date (2026-11-20) or an age (12h, 3d, 2w).'),
        ],
        responses: { '200': json(page(ref('SearchHit')), 'A page of hits.'), ...COMMON_ERRORS, '404': E404 },
      },
    },
    '/versions': {
      get: {
        operationId: 'versions',
        summary: 'Every version of one path of a VM, with the backups holding each.',
        parameters: [...PAGE, VM_Q(true), q('path', { type: 'string' }, '/<volume or label>/<path>.', true)],
        responses: {
          '200': json(page(ref('Version')), 'A page of versions, oldest first.'),
          ...COMMON_ERRORS,
          '404': E404,
        },
      },
    },
    '/restores': {
      post: {
        operationId: 'startRestore',
        summary: 'Queue a restore of a file or folder into a folder inside a configured restore root.',
        requestBody: body('RestoreRequest'),
        responses: {
          '202': accepted,
          ...COMMON_ERRORS,
          '403': error("'to' is outside every restore root (through '..' or a symlink out of one, too)."),
          '404': E404,
          '409': E409,
          '413': error(`The body is larger than ${MAX_BODY_BYTES} bytes.`),
          '415': error('The body is not application/json.'),
        },
      },
    },
    '/restores/vm': {
      post: {
        operationId: 'startVmRestore',
        summary: 'Queue a whole-VM restore (disks rebuilt, configuration patched) into a folder inside a restore root.',
        requestBody: body('VmRestoreRequest'),
        responses: {
          '202': accepted,
          ...COMMON_ERRORS,
          '403': error("'to' is outside every restore root."),
          '404': E404,
          '409': E409,
          '413': error(`The body is larger than ${MAX_BODY_BYTES} bytes.`),
          '415': error('The body is not application/json.'),
        },
      },
    },
    '/jobs': {
      get: {
        operationId: 'listJobs',
        summary: 'Jobs, newest first.',
        parameters: [
          q('state', { type: 'string' }, `A state or several, comma-separated: ${JOB_STATES.join(', ')}.`),
          q('kind', { type: 'string', enum: Object.keys(JOB_PRIORITY) }, 'Only jobs of this kind.'),
          q(
            'limit',
            { type: 'integer', minimum: 1, maximum: MAX_PAGE_LIMIT, default: DEFAULT_PAGE_LIMIT },
            'The newest N jobs.',
          ),
        ],
        responses: { '200': json(ref('JobList'), 'The jobs.'), ...COMMON_ERRORS },
      },
    },
    '/jobs/{id}': {
      get: {
        operationId: 'getJob',
        summary: 'One job with its progress, result or error.',
        parameters: [p('id', 'The job id.')],
        responses: { '200': json(ref('Job'), 'The job.'), ...COMMON_ERRORS, '404': E404 },
      },
    },
    '/jobs/{id}/cancel': {
      post: {
        operationId: 'cancelJob',
        summary: 'Cancel a job: a queued one at once (200), a running one at its next check (202).',
        parameters: [p('id', 'The job id.')],
        requestBody: body('CancelRequest', false),
        responses: {
          '200': json(ref('Job'), 'Cancelled.'),
          '202': json(ref('Job'), 'Cancel requested; the job stops at its next check.'),
          ...COMMON_ERRORS,
          '404': E404,
          '409': E409,
        },
      },
    },
  };
}

let cached: Json | undefined;

export function openApiDocument(): Json {
  cached ??= {
    openapi: '3.1.0',
    info: {
      title: 'vdbak daemon API',
      version: VERSION,
      description:
        'Agentless VM backup: VMs, backups, browsing and search, restores and downloads, jobs and status. ' +
        'Every route but /health and /openapi.json needs Authorization: Bearer <token>. ' +
        'Errors are { "error": { "code", "message" } } with a stable code.',
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: SCHEMAS,
    },
    paths: paths(),
  };
  return cached;
}
