/**
 * The deployment spec: the one schema every input (YAML file, programmatic API,
 * admin API) goes through. Parsing turns raw input into a complete, frozen,
 * typed value with every default filled in, or a FlotillaError naming the
 * field and the value that failed.
 */
import { z } from "zod";
import { FlotillaError } from "../errors.js";
import { importRefProblem } from "./import-ref.js";
import { assertUnique, routePath } from "./uniqueness.js";

export { assertUnique, importRefProblem, routePath };

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const ROUTE_PREFIX = /^\/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const RESOURCE_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,62}$/;

const finiteNonNegative = z.number().finite().nonnegative();

/** The resource hosts declare their memory as, and `actorOptions.memoryMiB` reserves. */
export const MEMORY_RESOURCE = "memoryMiB";

export const autoscalingConfigSchema = z
  .strictObject({
    /** @default 1 */
    minReplicas: z.number().int().nonnegative().max(10_000).default(1),
    /** @default max(1, minReplicas) */
    maxReplicas: z.number().int().positive().max(10_000).optional(),
    /** @default minReplicas */
    initialReplicas: z.number().int().nonnegative().max(10_000).optional(),
    /** Requests (queued + in flight) each replica should carry. @default 2 */
    targetNumOngoingRequestsPerReplica: z.number().finite().positive().default(2),
    /** @default 30 */
    upscaleDelayS: finiteNonNegative.default(30),
    /** @default 600 */
    downscaleDelayS: finiteNonNegative.default(600),
    /** How often the controller samples queue lengths. @default 1 */
    metricsIntervalS: z.number().finite().min(0.05).max(3600).default(1),
    /** @default 30 */
    lookBackPeriodS: z.number().finite().positive().max(86_400).default(30),
    /** Multiplies every scaling step. @default 1 */
    smoothingFactor: z.number().finite().positive().max(100).default(1),
    /** @default smoothingFactor */
    upscaleSmoothingFactor: z.number().finite().positive().max(100).optional(),
    /** @default smoothingFactor */
    downscaleSmoothingFactor: z.number().finite().positive().max(100).optional(),
  })
  .transform((c) => {
    const maxReplicas = c.maxReplicas ?? Math.max(1, c.minReplicas);
    return {
      ...c,
      maxReplicas,
      initialReplicas: c.initialReplicas ?? c.minReplicas,
      upscaleSmoothingFactor: c.upscaleSmoothingFactor ?? c.smoothingFactor,
      downscaleSmoothingFactor: c.downscaleSmoothingFactor ?? c.smoothingFactor,
    };
  })
  .superRefine((c, ctx) => {
    if (c.minReplicas > c.maxReplicas) {
      ctx.addIssue({ code: "custom", path: ["minReplicas"], message: `minReplicas (${c.minReplicas}) must not exceed maxReplicas (${c.maxReplicas})` });
    }
    else if (c.initialReplicas < c.minReplicas || c.initialReplicas > c.maxReplicas) {
      ctx.addIssue({ code: "custom", path: ["initialReplicas"], message: `initialReplicas (${c.initialReplicas}) must be within [minReplicas, maxReplicas] = [${c.minReplicas}, ${c.maxReplicas}]` });
    }
  });

export const actorOptionsSchema = z.strictObject({
  /** CPUs each replica reserves on its host; fractions allowed. @default 1 */
  numCpus: finiteNonNegative.max(1024).default(1),
  /** GPUs each replica reserves; fractions allowed (0.5 = two replicas share one GPU). @default 0 */
  numGpus: finiteNonNegative.max(64).default(0),
  /** Custom resources each replica reserves, e.g. `{ "memoryGiB": 2 }`. @default {} */
  resources: z
    .record(z.string().regex(RESOURCE_NAME, "resource names are letters, digits, '_', '.', '-'"), finiteNonNegative)
    .refine((r) => !(MEMORY_RESOURCE in r), "'memoryMiB' is reserved: set actorOptions.memoryMiB")
    .default({}),
  /**
   * Memory each replica reserves on its host (the `memoryMiB` resource hosts declare with --memory-mib), and its
   * ceiling: a replica whose resident memory stays above it is drained and replaced. @default none
   */
  memoryMiB: z.number().finite().positive().max(16_777_216).optional(),
  /** Environment variables for the replica process; OMP_NUM_THREADS here wins over the host's. @default {} */
  env: z.record(z.string().regex(ENV_NAME, "environment variable names are letters, digits and '_'"), z.string().max(65_536)).default({}),
});

export const runtimeEnvSchema = z.strictObject({
  /** The directory packed and shipped to every host: relative to the deploy file (`flotilla deploy`) or the cwd (API). `import` is relative to it. */
  workingDir: z
    .string()
    .min(1)
    .max(4096)
    .refine((p) => !p.includes("\0"), "the path contains a NUL byte"),
  /** gitignore-style patterns left out of the package; node_modules and .git always are. @default [] */
  excludes: z
    .array(
      z
        .string()
        .min(1)
        .max(1024)
        .refine((p) => !p.includes("\0") && !p.includes("\n"), "a pattern is one line without NUL bytes"),
    )
    .max(1000)
    .default([]),
});

/** Deeper JSON is refused before any recursive walk could overflow the stack. */
const MAX_JSON_DEPTH = 64;

/** Nesting depth of a value, walked without recursion; stops counting past `limit`. */
function depthOf(value: unknown, limit: number): number {
  let deepest = 0;
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, d] = stack.pop() as [unknown, number];
    if (v === null || typeof v !== "object") continue;
    deepest = Math.max(deepest, d);
    if (deepest > limit) return deepest;
    for (const child of Object.values(v)) stack.push([child, d + 1]);
  }
  return deepest;
}

const jsonValue: z.ZodType<unknown> = z
  .unknown()
  .superRefine((v, ctx) => {
    if (depthOf(v, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) ctx.addIssue({ code: "custom", message: `is nested more than ${MAX_JSON_DEPTH} levels deep` });
  })
  .pipe(z.json());

const rawSpecSchema = z.strictObject({
  /** DNS-label-like: lower-case letters, digits and '-', at most 63 characters. */
  name: z.string().max(63).regex(DNS_LABEL, "must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"),
  /** `path/to/module.ts#ExportName` inside the app directory (or runtimeEnv.workingDir); `#default` when omitted. */
  import: z
    .string()
    .min(1)
    .max(1024)
    .superRefine((ref, ctx) => {
      const problem = importRefProblem(ref);
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    }),
  /** @default 1 (not allowed together with autoscalingConfig) */
  numReplicas: z.number().int().nonnegative().max(10_000).optional(),
  /** Code version. Absent: every deploy is a new version. */
  version: z.string().min(1).max(128).optional(),
  /** Passed to `reconfigure(userConfig)`; changing it reconfigures replicas in place. */
  userConfig: jsonValue.optional(),
  /** HTTP path prefix; `null` serves no HTTP. @default "/<name>" */
  routePrefix: z
    .string()
    .max(512)
    .regex(ROUTE_PREFIX, "must start with '/' and contain only URL path characters")
    .nullable()
    .optional(),
  /** Requests one replica runs at once (its BullMQ worker concurrency). @default 100 */
  maxConcurrentQueries: z.number().int().positive().max(10_000).default(100),
  autoscalingConfig: autoscalingConfigSchema.optional(),
  actorOptions: actorOptionsSchema.default({ numCpus: 1, numGpus: 0, resources: {}, env: {} }),
  /** Seconds a draining replica may spend finishing in-flight requests. @default 20 */
  gracefulShutdownTimeoutS: z.number().finite().positive().max(3600).default(20),
  /** Replica-side limit on one request; the handler's AbortSignal fires and the caller gets 504. @default none */
  requestTimeoutS: z.number().finite().positive().max(86_400).optional(),
  /** Replica-side cap on a whole streamed answer (requestTimeoutS then limits the time between chunks). @default none */
  streamTimeoutS: z.number().finite().positive().max(86_400).optional(),
  /** Requests allowed to wait in the queue before new ones get 503. @default unlimited */
  maxQueuedRequests: z.number().int().positive().max(100_000_000).optional(),
  /** Times a request is retried after its replica process died while running it. @default 3 */
  maxRetries: z.number().int().nonnegative().max(100).default(3),
  /** Seconds an async request's record and result are kept after it finishes. @default 86400 */
  asyncResultTtlS: z.number().int().positive().max(31_536_000).optional(),
  /** Ship this directory (and its lockfile's dependencies) to the hosts. @default none: the module is in each host's app directory */
  runtimeEnv: runtimeEnvSchema.optional(),
  // The rollout policy is optional in the stored spec (its defaults come from rolloutPolicyOf), so specs
  // stored before these fields existed compare equal to the same spec parsed now.
  /** Return to the last revision that rolled out when a rollout fails. @default false */
  rollbackOnFailure: z.boolean().optional(),
  /** Failed starts or health checks of the new version after which its rollout counts as failed. @default 3 */
  rolloutFailureThreshold: z.number().int().positive().max(1000).optional(),
  /** A rollout not finished after this many seconds counts as failed. @default 600 */
  rolloutTimeoutS: z.number().finite().positive().max(86_400).optional(),
  /** Seconds between two calls of the handler's checkHealth(). @default 10 */
  healthCheckPeriodS: z.number().finite().min(0.05).max(3600).default(10),
  /** A checkHealth() that has not settled after this long failed; so has an event loop that answers no ping for this long. @default 30 */
  healthCheckTimeoutS: z.number().finite().min(0.05).max(3600).default(30),
  /** Consecutive failed health checks that make a replica unhealthy (it is drained and replaced). @default 3 */
  healthCheckFailureThreshold: z.number().int().min(1).max(1000).default(3),
});

export const deploymentSpecSchema = rawSpecSchema
  .superRefine((s, ctx) => {
    if (s.autoscalingConfig !== undefined && s.numReplicas !== undefined) {
      ctx.addIssue({ code: "custom", path: ["numReplicas"], message: "numReplicas cannot be set together with autoscalingConfig (the autoscaler owns the replica count)" });
    }
  })
  .transform((s) => {
    const { numReplicas, ...rest } = s;
    // An autoscaled spec has no numReplicas (the autoscaler owns the count), so a parsed spec parses again.
    return { ...rest, ...(s.autoscalingConfig ? {} : { numReplicas: numReplicas ?? 1 }), routePrefix: s.routePrefix === undefined ? `/${s.name}` : s.routePrefix };
  });

/** Defaults of the rollout policy fields. */
export const ROLLOUT_POLICY_DEFAULTS = { rollbackOnFailure: false, rolloutFailureThreshold: 3, rolloutTimeoutS: 600 } as const;

/** A spec's rollout policy with its defaults filled in. */
/** How long an async request's result is kept when the spec does not say (one day). */
export const DEFAULT_ASYNC_RESULT_TTL_S = 86_400;

export function rolloutPolicyOf(spec: { rollbackOnFailure?: boolean | undefined; rolloutFailureThreshold?: number | undefined; rolloutTimeoutS?: number | undefined }): {
  rollbackOnFailure: boolean;
  rolloutFailureThreshold: number;
  rolloutTimeoutS: number;
} {
  return {
    rollbackOnFailure: spec.rollbackOnFailure ?? ROLLOUT_POLICY_DEFAULTS.rollbackOnFailure,
    rolloutFailureThreshold: spec.rolloutFailureThreshold ?? ROLLOUT_POLICY_DEFAULTS.rolloutFailureThreshold,
    rolloutTimeoutS: spec.rolloutTimeoutS ?? ROLLOUT_POLICY_DEFAULTS.rolloutTimeoutS,
  };
}

/** What callers write: every field but `name` and `import` is optional. */
export type DeploymentSpecInput = z.input<typeof deploymentSpecSchema>;
/** A complete spec with all defaults filled in. */
export type DeploymentSpec = Readonly<z.output<typeof deploymentSpecSchema>>;
export type AutoscalingConfig = z.output<typeof autoscalingConfigSchema>;
export type ActorOptions = z.output<typeof actorOptionsSchema>;
export type RuntimeEnvSpec = z.output<typeof runtimeEnvSchema>;

function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (typeof value === "number" && !Number.isFinite(value)) return String(value);
  if (typeof value === "object" && value !== null && depthOf(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) return Array.isArray(value) ? "[…]" : "{…}";
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = Array.isArray(value) ? "[…]" : typeof value === "object" ? "{…}" : typeof value;
  }
  return short(text, 80);
}

function short(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 3)}...` : text;
}

function fieldPath(prefix: string, path: ReadonlyArray<PropertyKey>): string {
  let out = prefix;
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out ? `.${short(String(key), 40)}` : short(String(key), 40);
  }
  return out || "(spec)";
}

/** Messages stay readable (and bounded) whatever the input: at most this many problems are listed. */
const MAX_PROBLEMS = 10;

/** Turns zod issues into one FlotillaError whose message names each field and value. */
export function specError(issues: ReadonlyArray<z.core.$ZodIssue>, prefix = ""): FlotillaError {
  const problems = issues.map((issue) => {
    const path = issue.path;
    let message = issue.message;
    if (issue.code === "unrecognized_keys") {
      const keys = issue.keys;
      const field = fieldPath(prefix, [...path, keys[0] ?? ""]);
      const listed = keys.slice(0, 5).map((k) => `'${short(k, 40)}'`).join(", ");
      return { field, message: `unknown field${keys.length > 1 ? "s" : ""} ${listed}${keys.length > 5 ? ` and ${keys.length - 5} more` : ""}` };
    }
    const input = "input" in issue ? issue.input : undefined;
    if (issue.code === "invalid_type" && input === undefined) message = "is required";
    else if (issue.code !== "custom" || path.length === 0 || !message.includes(String(path[path.length - 1]))) message = `${message} (got ${describeValue(input)})`;
    return { field: fieldPath(prefix, path), message };
  });
  const shown = problems.slice(0, MAX_PROBLEMS);
  const more = problems.length > shown.length ? `; and ${problems.length - shown.length} more problems` : "";
  const text = shown.map((p) => `${p.field}: ${p.message}`).join("; ") + more;
  return new FlotillaError("INVALID_SPEC", `invalid deployment spec: ${text}`, { details: { problems: shown } });
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** Validates one spec; throws FlotillaError INVALID_SPEC naming the field. */
export function parseDeploymentSpec(input: unknown, prefix = ""): DeploymentSpec {
  const result = deploymentSpecSchema.safeParse(input, { reportInput: true });
  if (!result.success) throw specError(result.error.issues, prefix);
  return deepFreeze(result.data);
}

/**
 * Validates a whole deploy file (`{ deployments: [...] }`): every spec, and
 * that names and route prefixes are unique. All or nothing.
 */
export function parseDeployFile(input: unknown): DeploymentSpec[] {
  const file = z.strictObject({ deployments: z.array(z.unknown()).max(10_000) }).safeParse(input, { reportInput: true });
  if (!file.success) throw specError(file.error.issues);
  const specs = file.data.deployments.map((raw, i) => parseDeploymentSpec(raw, `deployments[${i}]`));
  assertUnique(specs);
  return specs;
}
