// The JSON Schema (draft 2020-12) of lab files, for editors: completion, hover
// text and squiggles while a lab is written. validate.ts stays the authority
// (it checks what a schema cannot: references between steps, templates, port
// ranges); the schema is built from the same constants so the two agree.
// `schema/lab.schema.json` is this object written out by scripts/write-lab-schema.ts.

import { MAX_ALIASES, ROLE_NAME } from '../files/names.ts';
import { FD_CEILINGS, FIT_UNITS, MODEL_NAMES, SERVER_MODES, RELEASE_MODES, STEP_KINDS, STEP_METRICS } from './types.ts';
import {
  BIND_MODES,
  LAB_NAME,
  MAX_COUNT,
  MAX_FILES_COUNT,
  MAX_NOFILE,
  MAX_DEFER_ACCEPT_MS,
  MAX_PROCESSES,
  MAX_SEND_BYTES,
  MAX_SEND_TOTAL_BYTES,
  MAX_TOLERANCE,
  MAX_TOLERANCE_PERCENT,
  MIN_FIT_SNAPSHOTS,
  NR_OPEN_RANGE,
  STACK_RANGE,
  STEP_NAME,
  SYSCTL_NAME,
} from './validate.ts';
import { VAR_NAME } from './template.ts';
import { formatSize } from '../files/sizes.ts';

type Schema = Record<string, unknown>;

/** Any string with a Handlebars expression: its value is known only after rendering. */
const TEMPLATE: Schema = { type: 'string', pattern: '\\{\\{', description: 'a Handlebars template over `vars:`' };

/** `schema`, or a template that renders to it. */
function templated(schema: Schema): Schema {
  return { anyOf: [schema, TEMPLATE] };
}

function integer(minimum: number, maximum: number, description: string): Schema {
  // Integer strings ("5000") are what templates render to, and validation accepts them.
  return {
    description,
    anyOf: [{ type: 'integer', minimum, maximum }, { type: 'string', pattern: '^\\s*-?\\d+\\s*$' }, TEMPLATE],
  };
}

function pattern(re: RegExp, description: string): Schema {
  return { description, ...templated({ type: 'string', pattern: re.source }) };
}

const allMetrics = [...new Set(Object.values(STEP_METRICS).flat())];

export const labSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'lab file',
  description: 'A declarative lab for Linux TCP connection limits. See docs/lab-file.md.',
  type: 'object',
  required: ['name', 'hosts', 'steps'],
  additionalProperties: false,
  properties: {
    name: pattern(LAB_NAME, 'The lab\'s name: lowercase letters, digits and "-"'),
    description: { type: 'string', description: 'What the lab shows, for the report' },
    timeout: { $ref: '#/$defs/duration', description: 'Bound on the whole run (default 5m, at most 1h)' },
    acknowledge: {
      type: 'object',
      description: 'Machine-wide sysctls (fs.*, vm.*, kernel.*…) the lab may change on the machine it runs on, each with the reason; or --ack on the command line',
      additionalProperties: { type: 'string' },
    },
    release: {
      description: 'How release steps close connections: abort (RST, no TIME_WAIT; default) or graceful (FIN: the side that closes first holds TIME_WAIT for 60 s)',
      ...templated({ enum: RELEASE_MODES }),
    },
    vars: {
      type: ['object', 'null'],
      description: 'Template variables, overridden by `--var name=value`; not templated themselves',
      propertyNames: { pattern: VAR_NAME.source },
      additionalProperties: { type: ['string', 'number', 'boolean'] },
    },
    hosts: {
      type: 'object',
      description: 'Role name -> host',
      minProperties: 1,
      propertyNames: { pattern: ROLE_NAME.source, not: { const: 'all' } },
      additionalProperties: { anyOf: [{ type: 'null' }, { $ref: '#/$defs/host' }] },
    },
    steps: {
      type: 'array',
      description: 'What the lab does, in order; each step has one kind key',
      minItems: 1,
      items: { $ref: '#/$defs/step' },
    },
    expect: {
      type: ['array', 'null'],
      description: 'Metrics compared with a model\'s prediction or a literal',
      items: { $ref: '#/$defs/expectation' },
    },
  },
  $defs: {
    duration: {
      description: 'A duration: "500ms", "30s", "5m", "1h", or a number of seconds',
      anyOf: [{ type: 'number', minimum: 0 }, { type: 'string', pattern: '^\\s*\\d+(\\.\\d+)?(ms|s|m|h)?\\s*$' }, TEMPLATE],
    },
    role: pattern(ROLE_NAME, 'A role named under `hosts:`'),
    port: integer(1, 65535, 'A TCP port'),
    boolean: { anyOf: [{ type: 'boolean' }, { enum: ['true', 'false'] }, TEMPLATE] },
    host: {
      type: 'object',
      additionalProperties: false,
      properties: {
        sysctls: {
          type: ['object', 'null'],
          description: 'Dotted sysctl name -> value, set for the run and restored after',
          propertyNames: { pattern: SYSCTL_NAME.source },
          properties: {
            'net.ipv4.ip_local_port_range': templated({
              type: 'string',
              pattern: '^\\s*\\d+\\s+\\d+\\s*$',
              description: 'Ephemeral ports "LOW HIGH", 1 <= LOW <= HIGH <= 65535',
            }),
          },
          additionalProperties: { type: ['string', 'number'] },
        },
        aliases: integer(0, MAX_ALIASES, 'Extra IPv4 addresses on the lab interface'),
        nofile: integer(1, MAX_NOFILE, 'Soft nofile limit for the agent\'s workers'),
        conntrack: { $ref: '#/$defs/boolean', description: 'Connection tracking on in the host\'s network namespace (an nftables table matching ct state; needs nft on the host)' },
      },
    },
    step: {
      description: `One of ${STEP_KINDS.join(', ')}, with an optional name`,
      oneOf: STEP_KINDS.map((kind) => ({
        type: 'object',
        required: [kind],
        additionalProperties: false,
        properties: {
          name: {
            description: 'Unique step name (default "<kind><index>"); "all" is reserved',
            ...templated({ type: 'string', pattern: STEP_NAME.source, not: { const: 'all' } }),
          },
          [kind]: { $ref: `#/$defs/${kind}` },
        },
      })),
    },
    listen: {
      type: 'object',
      description: 'Listen on a host\'s port',
      required: ['host', 'port'],
      additionalProperties: false,
      properties: {
        host: { $ref: '#/$defs/role' },
        port: { $ref: '#/$defs/port' },
        backlog: integer(0, 2147483647, 'listen() backlog (default 4096); the kernel caps it at somaxconn'),
        accept: { $ref: '#/$defs/boolean', description: 'Accept connections (default true)' },
        server: {
          description: 'Who holds the accepted connections: threads (a thread per connection) or epoll (one event loop); default: the agent\'s accept workers',
          ...templated({ enum: SERVER_MODES }),
        },
        stack: integer(STACK_RANGE[0], STACK_RANGE[1], 'server threads: the thread stack size in bytes, whole pages (default 262144)'),
        defer_accept: {
          $ref: '#/$defs/duration',
          description: `TCP_DEFER_ACCEPT, whole seconds up to ${MAX_DEFER_ACCEPT_MS / 1000}: a handshake's bare last ACK waits in the SYN queue for data, or this long (default off)`,
        },
      },
    },
    connect: {
      type: 'object',
      description: 'Open connections from one host to listening ports',
      required: ['from', 'to', 'count'],
      additionalProperties: false,
      properties: {
        from: { $ref: '#/$defs/role' },
        to: {
          description: '"ROLE:PORT" or a list of them; an earlier listen step must listen there',
          anyOf: [
            { $ref: '#/$defs/destination' },
            { type: 'array', minItems: 1, items: { $ref: '#/$defs/destination' } },
          ],
        },
        count: integer(1, MAX_COUNT, 'Connections to open at most'),
        sources: {
          description: 'Source addresses: 1 = the primary, n = primary + n-1 aliases (default 1); "auto": as many as count needs, each within 3/8 of the port range',
          anyOf: [...(integer(1, 1 + MAX_ALIASES, '').anyOf as Schema[]), { const: 'auto' }],
        },
        bind: { description: 'How sockets are bound before connect() (default none)', ...templated({ enum: BIND_MODES }) },
        port: { $ref: '#/$defs/port', description: 'The local port for bind: reuseaddr' },
        rate: {
          description: 'Connects per second, 0 = unpaced (default 0)',
          anyOf: [{ type: 'number', minimum: 0 }, { type: 'string', pattern: '^\\s*\\d+(\\.\\d+)?\\s*$' }, TEMPLATE],
        },
        timeout: { $ref: '#/$defs/duration', description: 'Bound on the step (default 60s)' },
        connect_timeout: { $ref: '#/$defs/duration', description: 'Bound on each connect() (default 3s)' },
        processes: integer(1, MAX_PROCESSES, 'Exact worker process count (default: as the fd limit needs)'),
        stop_on_error: { $ref: '#/$defs/boolean', description: 'Stop at the first error (default true)' },
        send: {
          description: `Bytes to write on each connection once established, left unread by the peer: "4KiB", "512B", or a number of bytes, at most ${formatSize(MAX_SEND_BYTES)}, and ${formatSize(MAX_SEND_TOTAL_BYTES)} over the step (count × send)`,
          anyOf: [{ type: 'integer', minimum: 1, maximum: MAX_SEND_BYTES }, { type: 'string', pattern: '^\\s*\\d+\\s*(B|KiB|MiB|GiB)?\\s*$' }, TEMPLATE],
        },
      },
      // `port` goes with bind: reuseaddr, and only with it.
      if: { required: ['bind'], properties: { bind: { const: 'reuseaddr' } } },
      then: { required: ['port'] },
      else: { not: { required: ['port'] } },
    },
    destination: templated({ type: 'string', pattern: '^\\s*[^:\\s]+:\\d+\\s*$' }),
    sleep: { $ref: '#/$defs/duration', description: 'Wait this long' },
    snapshot: {
      type: 'object',
      description: 'Record a host\'s memory and socket counters',
      required: ['host'],
      additionalProperties: false,
      properties: { host: { $ref: '#/$defs/role' } },
    },
    fit: {
      type: 'object',
      description: 'Fit slab memory against connections held, by least squares over earlier snapshots of one host',
      required: ['snapshots'],
      additionalProperties: false,
      properties: {
        snapshots: {
          type: 'array',
          minItems: MIN_FIT_SNAPSHOTS,
          items: { type: 'string' },
          description: 'Earlier snapshot step names, all of one host',
        },
        per: {
          description: 'What to count memory per: connection (the lab\'s connections held; default) or time-wait (the host\'s TIME_WAIT sockets)',
          ...templated({ enum: FIT_UNITS }),
        },
      },
    },
    files: {
      type: 'object',
      description:
        'Observe a machine-wide fd ceiling on a host: nr_open (the highest nofile setrlimit accepts) or file-max (an unprivileged process opens files until ENFILE); the sysctl the step changes is put back as soon as it ends',
      required: ['host', 'ceiling'],
      additionalProperties: false,
      properties: {
        host: { $ref: '#/$defs/role' },
        ceiling: { description: 'nr_open or file-max', ...templated({ enum: FD_CEILINGS }) },
        count: integer(1, MAX_FILES_COUNT, 'file-max: the files the step needs; fs.file-max is set to the files in use plus count for the step'),
        nr_open: integer(NR_OPEN_RANGE[0], NR_OPEN_RANGE[1], 'nr_open: fs.nr_open for the step (default: the host\'s)'),
      },
    },
    release: {
      description: '"all", or earlier listen/connect step names whose sockets to close',
      anyOf: [{ type: 'string' }, { type: 'array', minItems: 1, items: { type: 'string' } }],
    },
    expectation: {
      type: 'object',
      required: ['metric'],
      additionalProperties: false,
      properties: {
        metric: {
          description: '"<step>.<metric>"',
          ...templated({ type: 'string', pattern: `^[^.]+\\.(${allMetrics.join('|')})$` }),
        },
        model: { description: 'The model that predicts the metric', ...templated({ enum: MODEL_NAMES }) },
        value: { type: ['number', 'string'], description: 'A literal the metric must equal' },
        tolerance: {
          description: `Allowed difference: a number from 0 to ${MAX_TOLERANCE} (at most ${MAX_TOLERANCE_PERCENT}% of a literal value), or "N%" up to "${MAX_TOLERANCE_PERCENT}%" (default 0)`,
          anyOf: [{ type: 'number', minimum: 0, maximum: MAX_TOLERANCE }, { type: 'string', pattern: '^\\s*\\d+(\\.\\d+)?\\s*%?\\s*$' }, TEMPLATE],
        },
      },
      oneOf: [{ required: ['model'] }, { required: ['value'] }],
    },
  },
} as const;

/** The schema as committed in schema/lab.schema.json. */
export function labSchemaJson(): string {
  return JSON.stringify(labSchema, null, 2) + '\n';
}
