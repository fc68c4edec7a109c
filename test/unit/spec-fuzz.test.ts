/**
 * Fuzzing the spec gate: thousands of seeded random inputs (random JSON, and
 * valid specs broken in one place) must each end as a valid frozen spec or as
 * one INVALID_SPEC error with a short message naming a field. Every property is
 * its own test, so one broken property does not hide the others; a failure
 * prints the case number and kind, and the run replays from SEED.
 */
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { FlotillaError } from "../../src/errors.js";
import { parseDeployFile, parseDeploymentSpec, type DeploymentSpec } from "../../src/spec/deployment-spec.js";
import { mulberry32 } from "../helpers/prng.js";

const SEED = 0x5eed;
const SPEC_CASES = 5000;
const FILE_CASES = 600;
const MAX_MESSAGE = 20_000;
const HUGE = 100_000;

type Rng = () => number;
const int = (rng: Rng, lo: number, hi: number): number => lo + Math.floor(rng() * (hi - lo + 1));
const chance = (rng: Rng, p: number): boolean => rng() < p;
function pick<T>(rng: Rng, list: readonly T[]): T {
  return list[Math.floor(rng() * list.length)] as T;
}

/** Keys an attacker would try, each made an own property the way JSON.parse makes it. */
const POLLUTION_KEYS = ["__proto__", "constructor", "prototype"] as const;
const PAYLOAD = '{"polluted": true}';
const OTHER_KEYS = ["toString", "hasOwnProperty", "valueOf", "", " ", "a.b", "[0]", "名前", "replicas", "NUM_REPLICAS"];
const NON_FINITE = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];

/** Sets key as an own enumerable property, even `__proto__` (plain assignment would change the prototype). */
function defineKey(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/** An object whose only key is a pollution key, built by JSON.parse exactly as a request body would be. */
function pollutionObject(key: string): Record<string, unknown> {
  return JSON.parse(`{${JSON.stringify(key)}: ${PAYLOAD}}`) as Record<string, unknown>;
}

function randomString(rng: Rng): string {
  switch (int(rng, 0, 5)) {
    case 0:
      return "";
    case 1:
      return pick(rng, [...POLLUTION_KEYS, ...OTHER_KEYS]);
    case 2:
      return String.fromCharCode(...Array.from({ length: int(rng, 1, 12) }, () => int(rng, 0, 0xffff)));
    default:
      return Math.floor(rng() * 2 ** 40).toString(36);
  }
}

function randomNumber(rng: Rng): number {
  switch (int(rng, 0, 6)) {
    case 0:
      return int(rng, -5, 20);
    case 1:
      return (rng() - 0.5) * 100;
    case 2:
      return pick(rng, NON_FINITE);
    case 3:
      return pick(rng, [Number.MAX_VALUE, Number.MIN_VALUE, Number.MAX_SAFE_INTEGER + 2, 1e21, -1e21]);
    default:
      return int(rng, 0, 3);
  }
}

/** Any JSON value (plus NaN/Infinity), keys including pollution keys as own properties. */
function randomJson(rng: Rng, depth: number): unknown {
  const kind = depth <= 0 ? int(rng, 0, 3) : int(rng, 0, 5);
  switch (kind) {
    case 0:
      return null;
    case 1:
      return chance(rng, 0.5);
    case 2:
      return randomNumber(rng);
    case 3:
      return randomString(rng);
    case 4:
      return Array.from({ length: int(rng, 0, 4) }, () => randomJson(rng, depth - 1));
    default: {
      const obj: Record<string, unknown> = {};
      for (let i = int(rng, 0, 4); i > 0; i--) defineKey(obj, randomString(rng), randomJson(rng, depth - 1));
      return obj;
    }
  }
}

/** A value of the kinds that are never numbers (and never undefined). */
function nonNumber(rng: Rng): unknown {
  return pick(rng, [null, true, false, "1", "", [], [1], {}, { value: 1 }]);
}
function nonString(rng: Rng): unknown {
  return pick(rng, [null, 0, 1, -1, true, [], ["a"], {}, { s: "a" }, ...NON_FINITE]);
}
function nonObject(rng: Rng): unknown {
  return pick(rng, [null, 0, 1, true, "x", "", [], [{}], [1, 2], ...NON_FINITE]);
}

/** Every field of a spec, with the kind of wrong value it must reject. */
type FieldKind = "number" | "string" | "object" | "route";
const FIELDS: ReadonlyArray<readonly [string, FieldKind]> = [
  ["name", "string"],
  ["import", "string"],
  ["numReplicas", "number"],
  ["version", "string"],
  ["routePrefix", "route"],
  ["maxConcurrentQueries", "number"],
  ["gracefulShutdownTimeoutS", "number"],
  ["requestTimeoutS", "number"],
  ["maxQueuedRequests", "number"],
  ["maxRetries", "number"],
  ["actorOptions", "object"],
  ["actorOptions.numCpus", "number"],
  ["actorOptions.numGpus", "number"],
  ["actorOptions.resources", "object"],
  ["actorOptions.env", "object"],
  ["autoscalingConfig", "object"],
  ["autoscalingConfig.minReplicas", "number"],
  ["autoscalingConfig.maxReplicas", "number"],
  ["autoscalingConfig.initialReplicas", "number"],
  ["autoscalingConfig.targetNumOngoingRequestsPerReplica", "number"],
  ["autoscalingConfig.upscaleDelayS", "number"],
  ["autoscalingConfig.downscaleDelayS", "number"],
  ["autoscalingConfig.metricsIntervalS", "number"],
  ["autoscalingConfig.lookBackPeriodS", "number"],
  ["autoscalingConfig.smoothingFactor", "number"],
  ["autoscalingConfig.upscaleSmoothingFactor", "number"],
  ["autoscalingConfig.downscaleSmoothingFactor", "number"],
];
/** String fields, each limited to at most 1024 characters. */
const STRING_FIELDS = ["name", "import", "version", "routePrefix"] as const;

type SpecInput = Record<string, unknown> & { actorOptions?: Record<string, unknown>; autoscalingConfig?: Record<string, unknown> };

/** A valid spec input with a random choice of optional fields (no -0: JSON cannot keep it). */
function validSpec(rng: Rng, name: string): SpecInput {
  const spec: SpecInput = { name, import: pick(rng, ["echo.ts", "echo.ts#Echo", "models/m.mjs#default", "a/b/c.js#$h", "x.mts#_X"]) };
  if (chance(rng, 0.3)) spec.version = pick(rng, ["1", "v2.0.0", "2024-01-01"]);
  if (chance(rng, 0.3)) spec.userConfig = randomJsonFinite(rng, 3);
  if (chance(rng, 0.3)) spec.routePrefix = pick(rng, [null, "/", `/${name}/v1`, "/a-b_c.d~e"]);
  if (chance(rng, 0.3)) spec.maxConcurrentQueries = int(rng, 1, 1000);
  if (chance(rng, 0.3)) spec.gracefulShutdownTimeoutS = pick(rng, [0.5, 1, 20, 3600]);
  if (chance(rng, 0.2)) spec.requestTimeoutS = pick(rng, [0.1, 30, 86_400]);
  if (chance(rng, 0.2)) spec.maxQueuedRequests = int(rng, 1, 1_000_000);
  if (chance(rng, 0.2)) spec.maxRetries = int(rng, 0, 100);
  if (chance(rng, 0.5)) {
    const o: Record<string, unknown> = {};
    if (chance(rng, 0.5)) o.numCpus = pick(rng, [0, 0.25, 1, 2, 1024]);
    if (chance(rng, 0.5)) o.numGpus = pick(rng, [0, 0.5, 1, 64]);
    if (chance(rng, 0.3)) o.resources = { memoryGiB: int(rng, 0, 64), "tpu.v4": 0.5, constructor: 1 };
    if (chance(rng, 0.3)) o.env = { OMP_NUM_THREADS: String(int(rng, 1, 8)), _X: "", prototype: "p" };
    spec.actorOptions = o;
  }
  if (chance(rng, 0.3)) {
    const min = int(rng, 0, 3);
    const max = min + int(rng, min === 0 ? 1 : 0, 5);
    const c: Record<string, unknown> = { minReplicas: min, maxReplicas: max };
    if (chance(rng, 0.5)) c.initialReplicas = int(rng, min, max);
    if (chance(rng, 0.5)) c.upscaleDelayS = pick(rng, [0, 1, 30, 1e9]);
    if (chance(rng, 0.5)) c.downscaleDelayS = pick(rng, [0, 600]);
    if (chance(rng, 0.3)) c.smoothingFactor = pick(rng, [0.5, 1, 2]);
    if (chance(rng, 0.3)) c.metricsIntervalS = pick(rng, [0.05, 1, 3600]);
    spec.autoscalingConfig = c;
  } else if (chance(rng, 0.5)) spec.numReplicas = int(rng, 0, 10);
  return spec;
}

function randomJsonFinite(rng: Rng, depth: number): unknown {
  return JSON.parse(JSON.stringify(randomJson(rng, depth), (_k, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? 0 : v))) as unknown;
}

/** The object at a dotted path's parent, created when missing (switching to autoscaling when needed). */
function parentOf(spec: SpecInput, path: string): { obj: Record<string, unknown>; key: string } {
  const parts = path.split(".");
  if (parts.length === 1) return { obj: spec, key: parts[0]! };
  const [head, key] = parts as [string, string];
  if (head === "autoscalingConfig" && (spec.autoscalingConfig === undefined || typeof spec.autoscalingConfig !== "object")) {
    delete spec.numReplicas;
    spec.autoscalingConfig = {};
  }
  if (head === "actorOptions" && spec.actorOptions === undefined) spec.actorOptions = {};
  return { obj: spec[head] as Record<string, unknown>, key };
}

/** What a case must end in; `field` must then appear in the message. */
interface SpecCase {
  kind: string;
  input: unknown;
  expect: "valid" | "invalid" | "any";
  field?: string;
  /** The message need only contain the start of `field` (the field is a huge key). */
  fieldPrefix?: boolean;
}

function specCase(rng: Rng, n: number): SpecCase {
  const spec = validSpec(rng, `d${n.toString(36)}`);
  const roll = rng();
  if (roll < 0.15) return { kind: "valid", input: spec, expect: "valid" };
  if (roll < 0.25) return { kind: "random json", input: randomJson(rng, 4), expect: "any" };
  if (roll < 0.5) {
    const [path, kind] = pick(rng, FIELDS);
    const { obj, key } = parentOf(spec, path);
    const bad = kind === "number" ? nonNumber(rng) : kind === "string" ? nonString(rng) : kind === "route" ? pick(rng, [0, true, [], {}, "no-slash"]) : nonObject(rng);
    obj[key] = bad;
    return { kind: `wrong type at ${path}`, input: spec, expect: "invalid", field: path };
  }
  if (roll < 0.6) {
    const [path, kind] = pick(rng, FIELDS.filter(([, k]) => k === "number"));
    const { obj, key } = parentOf(spec, path);
    obj[key] = pick(rng, [...NON_FINITE, -1, -0.5]);
    return { kind: `bad number at ${path}`, input: spec, expect: "invalid", field: path };
  }
  if (roll < 0.75) {
    // Extra keys where the object is strict: the spec, actorOptions, autoscalingConfig.
    const where = pick(rng, ["", "actorOptions", "autoscalingConfig"] as const);
    const target = where === "" ? spec : parentOf(spec, `${where}.x`).obj;
    const key = chance(rng, 0.6) ? pick(rng, POLLUTION_KEYS) : chance(rng, 0.03) ? "k".repeat(HUGE) : pick(rng, OTHER_KEYS);
    const extra = POLLUTION_KEYS.includes(key as (typeof POLLUTION_KEYS)[number]) ? pollutionObject(key) : { [key]: randomJson(rng, 2) };
    for (const [k, v] of Object.entries(extra)) defineKey(target, k, v);
    // A bounded message can show only the start of a huge key, so only that start is required.
    const shown = key.length > 20 ? key.slice(0, 20) : key;
    return { kind: `extra key ${key.length > 20 ? `(${key.length} chars)` : JSON.stringify(key)} in ${where || "spec"}`, input: spec, expect: "invalid", field: where ? `${where}.${shown}` : shown, fieldPrefix: key !== shown };
  }
  if (roll < 0.8) {
    // Pollution keys inside records and userConfig: accepted or refused, but never polluting.
    const where = pick(rng, ["actorOptions.resources", "actorOptions.env", "userConfig"] as const);
    const key = pick(rng, POLLUTION_KEYS);
    const value = where === "actorOptions.env" && chance(rng, 0.5) ? JSON.parse(`{${JSON.stringify(key)}: "x"}`) : pollutionObject(key);
    if (where === "userConfig") spec.userConfig = { nested: value };
    else {
      const { obj, key: field } = parentOf(spec, where);
      obj[field] = value;
    }
    return { kind: `${key} inside ${where}`, input: spec, expect: "any" };
  }
  if (roll < 0.86) {
    const field = pick(rng, STRING_FIELDS);
    spec[field] = (field === "routePrefix" ? "/" : "") + "a".repeat(HUGE);
    return { kind: `100 KB ${field}`, input: spec, expect: "invalid", field };
  }
  if (roll < 0.88) {
    spec.userConfig = "u".repeat(HUGE);
    return { kind: "100 KB userConfig", input: spec, expect: "valid" };
  }
  if (roll < 0.884) {
    // Deep nesting: the userConfig must parse or be refused as INVALID_SPEC, whatever its depth.
    const depth = pick(rng, [10, 100, 1000, 3000]);
    let value: unknown = 1;
    for (let i = 0; i < depth; i++) value = chance(rng, 0.5) ? [value] : { a: value };
    if (chance(rng, 0.5)) {
      spec.userConfig = value;
      return { kind: `userConfig nested ${depth} deep`, input: spec, expect: "any" };
    }
    const [path] = pick(rng, FIELDS);
    const { obj, key } = parentOf(spec, path);
    obj[key] = [value];
    return { kind: `array nested ${depth + 1} deep at ${path}`, input: spec, expect: "invalid", field: path };
  }
  if (roll < 0.94) {
    const field = pick(rng, ["actorOptions", "autoscalingConfig", "actorOptions.resources", "actorOptions.env"]);
    const { obj, key } = parentOf(spec, field);
    obj[key] = pick(rng, [[], [{}], [{ numCpus: 1 }], [1, 2]]);
    return { kind: `array for ${field}`, input: spec, expect: "invalid", field };
  }
  if (roll < 0.97) {
    spec.userConfig = { value: pick(rng, NON_FINITE), list: [1, pick(rng, NON_FINITE)] };
    return { kind: "non-finite number in userConfig", input: spec, expect: "invalid", field: "userConfig" };
  }
  return { kind: "whole spec as an array", input: [spec], expect: "invalid", field: "(spec)" };
}

interface FileCase {
  kind: string;
  input: unknown;
  /** Index of the broken spec, or undefined when the file is valid. */
  broken?: number;
  count: number;
}

function fileCase(rng: Rng): FileCase {
  const count = int(rng, 2, 6);
  const specs: unknown[] = Array.from({ length: count }, (_, i) => validSpec(rng, `svc-${i}`));
  // Distinct route prefixes: the defaults are distinct already; explicit ones are made so.
  specs.forEach((s, i) => {
    const spec = s as SpecInput;
    if (typeof spec.routePrefix === "string") spec.routePrefix = `/svc-${i}${spec.routePrefix}`;
  });
  if (chance(rng, 0.15)) return { kind: "valid file", input: { deployments: specs }, count };
  const broken = int(rng, 0, count - 1);
  const c = specCase(rng, broken);
  // Use a mutation that is certain to fail, on this index.
  const bad = c.expect === "invalid" ? c.input : { ...(specs[broken] as SpecInput), numReplicas: -1, autoscalingConfig: undefined };
  specs[broken] = bad;
  return { kind: `file of ${count}, deployments[${broken}] broken (${c.expect === "invalid" ? c.kind : "numReplicas -1"})`, input: { deployments: specs }, broken, count };
}

/** True when the value and everything reachable from it is frozen. */
function deepFrozen(value: unknown): boolean {
  if (value === null || typeof value !== "object") return true;
  return Object.isFrozen(value) && Object.values(value).every(deepFrozen);
}

/** True when every object inside has a plain prototype (nothing supplied by the input). */
function plainPrototypes(value: unknown): boolean {
  if (value === null || typeof value !== "object") return true;
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== Array.prototype && proto !== null) return false;
  return Object.values(value).every(plainPrototypes);
}

const SPEC_ERROR_PREFIX = "invalid deployment spec: ";

/** Problems with a rejection: anything but INVALID_SPEC, an empty, huge or path-less message. */
function rejectionProblems(err: unknown, field: string | undefined, fieldPrefix = false): { kind?: string; empty?: string; long?: string; path?: string } {
  if (!(err instanceof FlotillaError) || err.code !== "INVALID_SPEC") {
    return { kind: `threw ${err instanceof Error ? `${err.name}: ${err.message.slice(0, 100)}` : String(err)}` };
  }
  const out: { empty?: string; long?: string; path?: string } = {};
  const message = err.message;
  if (message.length <= SPEC_ERROR_PREFIX.length) out.empty = `message ${JSON.stringify(message)}`;
  if (message.length >= MAX_MESSAGE) out.long = `message is ${message.length} chars: ${message.slice(0, 120)}...`;
  const problems = err.details?.problems as Array<{ field: string }> | undefined;
  const named = problems
    ? problems.length > 0 && problems.every((p) => p.field.length > 0 && message.includes(`${p.field}: `))
    : /deployments\[\d+\]\.(name|routePrefix): /.test(message);
  if (!named || !message.startsWith(SPEC_ERROR_PREFIX)) out.path = `no field path in ${message.slice(0, 200)}`;
  else if (field !== undefined && !(fieldPrefix ? [""] : [": ", ".", "["]).some((next) => message.includes(`${field}${next}`))) out.path = `'${field}' not named in ${message.slice(0, 200)}`;
  return out;
}

interface Violation {
  at: string;
  problem: string;
}

interface FuzzReport {
  cases: number;
  valid: number;
  rejected: number;
  /** Property name → violations found. */
  violations: Record<"throwsOnlyInvalidSpec" | "messageNonEmpty" | "messageBounded" | "namesField" | "expectation" | "frozen" | "roundTrip" | "prototypes" | "allOrNothing", Violation[]>;
}

function runFuzz(): FuzzReport {
  const rng = mulberry32(SEED);
  const report: FuzzReport = {
    cases: 0,
    valid: 0,
    rejected: 0,
    violations: { throwsOnlyInvalidSpec: [], messageNonEmpty: [], messageBounded: [], namesField: [], expectation: [], frozen: [], roundTrip: [], prototypes: [], allOrNothing: [] },
  };
  const v = report.violations;

  const checkRejection = (at: string, err: unknown, field: string | undefined, fieldPrefix?: boolean): void => {
    report.rejected++;
    const p = rejectionProblems(err, field, fieldPrefix);
    if (p.kind) v.throwsOnlyInvalidSpec.push({ at, problem: p.kind });
    if (p.empty) v.messageNonEmpty.push({ at, problem: p.empty });
    if (p.long) v.messageBounded.push({ at, problem: p.long });
    if (p.path) v.namesField.push({ at, problem: p.path });
  };
  const checkValid = (at: string, spec: DeploymentSpec): void => {
    report.valid++;
    if (!deepFrozen(spec)) v.frozen.push({ at, problem: "result is not deeply frozen" });
    if (!plainPrototypes(spec)) v.prototypes.push({ at, problem: "an object in the result has a prototype taken from the input" });
    try {
      assert.deepStrictEqual(parseDeploymentSpec(JSON.parse(JSON.stringify(spec))), spec);
    } catch (err) {
      v.roundTrip.push({ at, problem: err instanceof Error ? err.message.slice(0, 300) : String(err) });
    }
  };

  for (let n = 0; n < SPEC_CASES; n++) {
    const c = specCase(rng, n);
    const at = `spec case ${n} (${c.kind})`;
        let spec: DeploymentSpec | undefined;
    try {
      spec = parseDeploymentSpec(c.input);
    } catch (err) {
      checkRejection(at, err, c.field, c.fieldPrefix);
      if (c.expect === "valid") v.expectation.push({ at, problem: `a valid spec was rejected: ${err instanceof Error ? err.message.slice(0, 200) : String(err)}` });
    }
    report.cases++;
    if (spec === undefined) continue;
    checkValid(at, spec);
    if (c.expect === "invalid") v.expectation.push({ at, problem: `accepted: ${JSON.stringify(spec).slice(0, 200)}` });
  }

  for (let n = 0; n < FILE_CASES; n++) {
    const c = fileCase(rng);
    const at = `file case ${n} (${c.kind})`;
    let specs: DeploymentSpec[] | undefined;
    try {
      specs = parseDeployFile(c.input);
    } catch (err) {
      checkRejection(at, err, c.broken === undefined ? undefined : `deployments[${c.broken}]`);
      if (c.broken === undefined) v.allOrNothing.push({ at, problem: `a valid file was rejected: ${err instanceof Error ? err.message.slice(0, 200) : String(err)}` });
    }
    report.cases++;
    if (specs === undefined) continue;
    if (c.broken !== undefined) v.allOrNothing.push({ at, problem: `returned ${specs.length} specs although one is broken` });
    else if (specs.length !== c.count) v.allOrNothing.push({ at, problem: `returned ${specs.length} of ${c.count} specs` });
    specs.forEach((s, i) => checkValid(`${at} spec ${i}`, s));
  }

  // Whole files that are random JSON, or whose `deployments` is not an array of objects.
  for (let n = 0; n < 400; n++) {
    const input = chance(rng, 0.5) ? randomJson(rng, 3) : { deployments: randomJson(rng, 3) };
    const at = `random file ${n}`;
    try {
      const specs = parseDeployFile(input);
      specs.forEach((s, i) => checkValid(`${at} spec ${i}`, s));
    } catch (err) {
      checkRejection(at, err, undefined);
    }
    report.cases++;
  }
  return report;
}

function assertNone(list: readonly Violation[], what: string): void {
  if (list.length === 0) return;
  // One example of each distinct problem (numbers and long runs stripped), so one bug does not hide another.
  const byProblem = new Map<string, Violation>();
  for (const x of list) {
    const shape = x.problem.replace(/\d+/g, "#").replace(/(.)\1{20,}/g, "$1…").slice(0, 90);
    if (!byProblem.has(shape)) byProblem.set(shape, x);
  }
  const shown = [...byProblem.values()].slice(0, 8).map((x) => `  - ${x.at}: ${x.problem}`);
  assert.fail(`${list.length} case(s) ${what} (seed ${SEED}); ${byProblem.size} distinct problem(s):\n${shown.join("\n")}`);
}

describe(`spec fuzz (seed ${SEED})`, () => {
  let report: FuzzReport;
  before(() => {
    report = runFuzz();
  });

  it("runs thousands of cases, both accepting and rejecting many", () => {
    assert.ok(report.cases >= SPEC_CASES + FILE_CASES, `${report.cases} cases`);
    assert.ok(report.valid > 500, `${report.valid} valid specs seen`);
    assert.ok(report.rejected > 3000, `${report.rejected} rejections seen`);
  });

  it("never throws anything but FlotillaError INVALID_SPEC", () => {
    assertNone(report.violations.throwsOnlyInvalidSpec, "threw something else");
  });

  it("gives a non-empty message", () => {
    assertNone(report.violations.messageNonEmpty, "had an empty message");
  });

  it(`keeps the message under ${MAX_MESSAGE} characters, even for huge inputs`, () => {
    assertNone(report.violations.messageBounded, "had an unbounded message");
  });

  it("names the field path in the message", () => {
    assertNone(report.violations.namesField, "did not name the field");
  });

  it("accepts what is valid and rejects what is broken", () => {
    assertNone(report.violations.expectation, "ended the wrong way");
  });

  it("returns deeply frozen specs", () => {
    assertNone(report.violations.frozen, "were not frozen");
  });

  it("round-trips every valid spec through JSON unchanged", () => {
    assertNone(report.violations.roundTrip, "did not round-trip");
  });

  it("never pollutes Object.prototype nor lets the input choose a prototype", () => {
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(Object.prototype.hasOwnProperty.call(Object.prototype, "polluted"), false);
    assert.equal(([] as unknown as Record<string, unknown>).polluted, undefined);
    assertNone(report.violations.prototypes, "carried a foreign prototype");
  });

  it("rejects a whole deploy file when any one spec is broken, naming its index", () => {
    assertNone(report.violations.allOrNothing, "broke all-or-nothing");
  });
});

describe("spec fuzz: the worst cases, one by one", () => {
  const base = { name: "echo", import: "echo.ts#Echo" };

  /** The thrown error, which must be INVALID_SPEC. */
  function invalid(fn: () => unknown): FlotillaError {
    try {
      fn();
    } catch (err) {
      assert.ok(err instanceof FlotillaError, `threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
      assert.equal(err.code, "INVALID_SPEC");
      return err;
    }
    assert.fail("accepted");
  }

  it("refuses __proto__, constructor and prototype keys made by JSON.parse, without pollution", () => {
    for (const key of POLLUTION_KEYS) {
      const spec = JSON.parse(`{"name": "echo", "import": "echo.ts", ${JSON.stringify(key)}: ${PAYLOAD}}`) as unknown;
      assert.match(invalid(() => parseDeploymentSpec(spec)).message, new RegExp(`${key}: unknown field '${key}'`));
      const file = JSON.parse(`{"deployments": [], ${JSON.stringify(key)}: ${PAYLOAD}}`) as unknown;
      assert.match(invalid(() => parseDeployFile(file)).message, new RegExp(`${key}: unknown field`));
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  it("keeps the message short for a 100 KB unknown key", () => {
    const message = invalid(() => parseDeploymentSpec({ ...base, ["k".repeat(HUGE)]: 1 })).message;
    assert.ok(message.length < MAX_MESSAGE, `message is ${message.length} chars`);
  });

  it("keeps the message short for thousands of unknown keys or bad env names", () => {
    const keys: Record<string, number> = {};
    const env: Record<string, string> = {};
    for (let i = 0; i < 5000; i++) {
      keys[`unknown${i}`] = i;
      env[`9bad${i}`] = "x";
    }
    const many = invalid(() => parseDeploymentSpec({ ...base, ...keys })).message;
    assert.ok(many.length < MAX_MESSAGE, `unknown keys: message is ${many.length} chars`);
    const envMessage = invalid(() => parseDeploymentSpec({ ...base, actorOptions: { env } })).message;
    assert.ok(envMessage.length < MAX_MESSAGE, `bad env names: message is ${envMessage.length} chars`);
  });

  it("refuses (or accepts) a userConfig nested 5,000 deep with INVALID_SPEC, not a stack overflow", () => {
    const deep = JSON.parse(`${"[".repeat(5000)}1${"]".repeat(5000)}`) as unknown;
    try {
      parseDeploymentSpec({ ...base, userConfig: deep });
    } catch (err) {
      assert.ok(err instanceof FlotillaError, `threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
      assert.equal(err.code, "INVALID_SPEC");
      assert.match(err.message, /userConfig: /);
    }
  });

  it("refuses a deeply nested array where a string or a list of specs belongs with INVALID_SPEC", () => {
    const deep = JSON.parse(`${"[".repeat(5000)}1${"]".repeat(5000)}`) as unknown;
    assert.match(invalid(() => parseDeploymentSpec({ ...base, name: deep })).message, /name: /);
    assert.match(invalid(() => parseDeployFile({ deployments: deep })).message, /deployments/);
    assert.match(invalid(() => parseDeployFile(deep)).message, /\(spec\): /);
  });

  it("rejects a deploy file of valid specs with one broken in the middle, returning nothing", () => {
    const specs = [0, 1, 2, 3].map((i) => ({ name: `s${i}`, import: "s.ts" }));
    const file = { deployments: [...specs.slice(0, 2), { name: "bad", import: "s.ts", actorOptions: { numCpus: Number.NaN } }, ...specs.slice(2)] };
    assert.match(invalid(() => parseDeployFile(file)).message, /deployments\[2\]\.actorOptions\.numCpus: /);
  });
});
