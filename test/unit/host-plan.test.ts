/**
 * planHost() is one host tick as a pure function. The first tests pin single
 * decisions; the last drives it through a seeded simulated world, where the
 * controller changes assignments and records at random and fake processes
 * start, fail, reconfigure (sometimes losing the message), drain and exit,
 * and asserts what a user would see: one process per replica id, nothing
 * started while the host stops, every assigned replica running its current
 * config once the world is quiet, and a stopping host ending empty.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { settingsKey, settingsOf } from "../../src/actors/replica-config.js";
import type { ReplicaProcessState } from "../../src/actors/replica-ipc.js";
import { MEMORY_SAMPLES, planHost, PRESTART_BACKOFF_MS, RECONFIGURE_RETRY_MS, type HostAction, type HostLocal, type LocalReplica, type ReplicaVitals } from "../../src/host/host-plan.js";
import type { DeploymentRecord, ReplicaAssignment } from "../../src/shared/records.js";
import { parseDeploymentSpec, type DeploymentSpecInput } from "../../src/spec/deployment-spec.js";
import { mulberry32 } from "../helpers/prng.js";
import { quietVitals } from "../helpers/vitals.js";

const HOST = "host-a";
const T0 = 1_700_000_000_000;

function record(codeVersion: string, configVersion = "cfg1", input: Partial<DeploymentSpecInput> = {}): DeploymentRecord {
  const spec = parseDeploymentSpec({ name: "app", import: "app.ts", ...input });
  return { spec, codeVersion, configVersion, generation: 1, deployedAt: T0 };
}

function assignment(id: string, codeVersion: string, change: Partial<ReplicaAssignment> = {}): ReplicaAssignment {
  return { id, deployment: "app", codeVersion, version: codeVersion, host: HOST, desired: "run", resources: { CPU: 1 }, gpuIds: [], createdAt: T0, ...change };
}

/** A replica whose host has seen nothing wrong with it. */
const healthy = quietVitals;

function replica(id: string, rec: DeploymentRecord, change: Partial<LocalReplica> = {}): LocalReplica {
  return {
    id,
    state: "running",
    configVersion: rec.configVersion,
    settingsKey: settingsKey(settingsOf(rec.spec)),
    reconfigureSent: null,
    drainRequested: false,
    vitals: healthy(),
    ...change,
  };
}

function local(change: Partial<Omit<HostLocal, "replicas">> & { replicas?: LocalReplica[] } = {}): HostLocal {
  const { replicas = [], ...rest } = change;
  return {
    hostId: HOST,
    stopping: false,
    finished: new Set(),
    prestart: { target: 0, pooled: 0, earlyExitAt: null },
    ...rest,
    replicas: new Map(replicas.map((r) => [r.id, r])),
  };
}

const byId = <T extends { id: string }>(items: T[]): Map<string, T> => new Map(items.map((i) => [i.id, i]));
const records = (rec: DeploymentRecord): Map<string, DeploymentRecord> => new Map([[rec.spec.name, rec]]);
const ofType = <K extends HostAction["type"]>(actions: HostAction[], type: K): Array<Extract<HostAction, { type: K }>> =>
  actions.filter((a): a is Extract<HostAction, { type: K }> => a.type === type);

describe("planHost: starting replicas", () => {
  it("spawns a replica assigned here whose record names its code, and only that one", () => {
    const rec = record("v1");
    const assignments = byId([assignment("r1", "v1"), assignment("r2", "v1", { host: "host-b" }), assignment("r3", "v1", { host: null })]);
    const actions = planHost(assignments, records(rec), local(), T0);
    assert.deepEqual(
      ofType(actions, "spawn").map((a) => [a.assignment.id, a.record.codeVersion]),
      [["r1", "v1"]],
    );
    assert.deepEqual(planHost(assignments, records(rec), local({ replicas: [replica("r1", rec)] }), T0), [], "a running replica is left alone");
  });

  it("does not start a finished replica id again, and forgets it once its assignment is gone", () => {
    const rec = record("v1");
    const assigned = byId([assignment("r1", "v1")]);
    const finished = new Set(["r1"]);
    assert.deepEqual(planHost(assigned, records(rec), local({ finished }), T0), [], "an ended replica stays ended while assigned");
    assert.deepEqual(planHost(new Map(), records(rec), local({ finished }), T0), [{ type: "forget", id: "r1" }]);
  });

  it("waits for the record's codeVersion to match the assignment's before starting or updating", () => {
    const assignments = byId([assignment("r2", "v2")]);
    assert.deepEqual(planHost(assignments, records(record("v1")), local(), T0), [], "r2 waits for the record of v2");
    assert.deepEqual(ofType(planHost(assignments, records(record("v2")), local(), T0), "spawn").map((a) => a.assignment.id), ["r2"]);

    const running = replica("r1", record("v0", "cfg0"));
    const newer = record("v1", "cfg9", { maxConcurrentQueries: 7, userConfig: { threshold: 9 } });
    assert.deepEqual(planHost(byId([assignment("r1", "v0")]), records(newer), local({ replicas: [running] }), T0), [], "a replica of older code gets no settings or userConfig of newer code");
  });

  it("tops up prestarted processes, but not while a replica starts, nor for a while after one ended early", () => {
    const rec = record("v1");
    const prestart = { target: 2, pooled: 0, earlyExitAt: null };
    assert.deepEqual(planHost(new Map(), new Map(), local({ prestart }), T0), [{ type: "prestart", count: 2 }]);
    assert.deepEqual(planHost(new Map(), new Map(), local({ prestart: { ...prestart, pooled: 2 } }), T0), [], "a full pool");
    const spawning = planHost(byId([assignment("r1", "v1")]), records(rec), local({ prestart }), T0);
    assert.deepEqual(ofType(spawning, "prestart"), [], "not while this tick starts a replica");
    const starting = local({ prestart, replicas: [replica("r1", rec, { state: "starting" })] });
    assert.deepEqual(ofType(planHost(byId([assignment("r1", "v1")]), records(rec), starting, T0), "prestart"), [], "not while a replica is starting");

    const failedAt = T0 - 1000;
    const backedOff = local({ prestart: { ...prestart, earlyExitAt: failedAt } });
    assert.deepEqual(planHost(new Map(), new Map(), backedOff, T0), [], "paused after an early exit");
    assert.deepEqual(planHost(new Map(), new Map(), backedOff, failedAt + PRESTART_BACKOFF_MS - 1), []);
    assert.deepEqual(planHost(new Map(), new Map(), backedOff, failedAt + PRESTART_BACKOFF_MS), [{ type: "prestart", count: 2 }], "and resumed after the back-off");
  });
});

describe("planHost: draining", () => {
  it("drains a replica whose assignment says drain, is gone, or moved to another host, once", () => {
    const rec = record("v1");
    const procs = [replica("r1", rec), replica("r2", rec), replica("r3", rec), replica("r4", rec)];
    const assignments = byId([assignment("r1", "v1", { desired: "drain" }), assignment("r3", "v1", { host: "host-b" }), assignment("r4", "v1")]);
    const actions = planHost(assignments, records(rec), local({ replicas: procs }), T0);
    assert.deepEqual(
      ofType(actions, "drain").map((a) => [a.id, a.reason]).sort(),
      [["r1", "desired"], ["r2", "unassigned"], ["r3", "unassigned"]],
    );
    const asked = procs.map((p) => (p.id === "r4" ? p : { ...p, drainRequested: true }));
    assert.deepEqual(planHost(assignments, records(rec), local({ replicas: asked }), T0), [], "a drain is asked for once");
  });

  it("drains everything and starts nothing while the host stops", () => {
    const rec = record("v1", "cfg2", { maxConcurrentQueries: 9 });
    const procs = [replica("r1", record("v1")), replica("r2", rec, { state: "starting" })];
    const assignments = byId([assignment("r1", "v1"), assignment("r2", "v1"), assignment("r3", "v1")]);
    const actions = planHost(assignments, records(rec), local({ stopping: true, replicas: procs, prestart: { target: 1, pooled: 0, earlyExitAt: null } }), T0);
    assert.deepEqual(actions, [
      { type: "drain", id: "r1", reason: "stopping" },
      { type: "drain", id: "r2", reason: "stopping" },
    ]);
  });
});

describe("planHost: updates in place", () => {
  it("reconfigures a running replica on a new userConfig, and sends it again only after the retry interval", () => {
    const rec = record("v1", "cfg2", { userConfig: { threshold: 2 } });
    const assignments = byId([assignment("r1", "v1")]);
    const proc = replica("r1", rec, { configVersion: "cfg1" });
    assert.deepEqual(planHost(assignments, records(rec), local({ replicas: [proc] }), T0), [
      { type: "reconfigure", id: "r1", userConfig: { threshold: 2 }, configVersion: "cfg2" },
    ]);
    const sent = { ...proc, reconfigureSent: { configVersion: "cfg2", at: T0 } };
    assert.deepEqual(planHost(assignments, records(rec), local({ replicas: [sent] }), T0 + RECONFIGURE_RETRY_MS), [], "not again within the retry interval");
    assert.equal(ofType(planHost(assignments, records(rec), local({ replicas: [sent] }), T0 + RECONFIGURE_RETRY_MS + 1), "reconfigure").length, 1, "again after it");
    const newer = record("v1", "cfg3", { userConfig: { threshold: 3 } });
    assert.deepEqual(ofType(planHost(assignments, records(newer), local({ replicas: [sent] }), T0 + 1), "reconfigure").map((a) => a.configVersion), ["cfg3"], "a newer config goes at once");
    for (const state of ["starting", "reconfiguring", "draining"] as const) {
      assert.deepEqual(planHost(assignments, records(rec), local({ replicas: [{ ...proc, state }] }), T0), [], `not while ${state}`);
    }
  });

  it("sends new settings to a running or reconfiguring replica", () => {
    const rec = record("v1", "cfg1", { maxConcurrentQueries: 4 });
    const proc = replica("r1", record("v1", "cfg1"));
    const assignments = byId([assignment("r1", "v1")]);
    for (const state of ["running", "reconfiguring"] as const) {
      assert.deepEqual(planHost(assignments, records(rec), local({ replicas: [{ ...proc, state }] }), T0), [{ type: "settings", id: "r1", settings: settingsOf(rec.spec) }]);
    }
    assert.deepEqual(planHost(assignments, records(rec), local({ replicas: [{ ...proc, state: "starting" }] }), T0), []);
  });
});

describe("planHost: replacing live replicas", () => {
  const rec = record("v1");
  const assigned = byId([assignment("r1", "v1")]);
  const plan = (proc: LocalReplica, now = T0, assignments = assigned) => planHost(assignments, records(rec), local({ replicas: [proc] }), now);
  const failing = (n: number, lastError = "database pool closed") => healthy({ health: { lastCheckAt: T0 - 100, consecutiveFailures: n, lastError } });

  it("drains a replica after healthCheckFailureThreshold consecutive failed checks, naming the last error, once", () => {
    assert.deepEqual(plan(replica("r1", rec, { vitals: failing(2) })), [], "below the threshold");
    assert.deepEqual(plan(replica("r1", rec, { vitals: failing(3) })), [
      { type: "replace", id: "r1", kind: "health", reason: "health check failed: database pool closed" },
    ]);
    assert.deepEqual(plan(replica("r1", rec, { vitals: failing(1), }), T0), [], "a threshold of 3 is not met by 1");
    assert.deepEqual(ofType(plan(replica("r1", rec, { vitals: { ...failing(1), healthCheckFailureThreshold: 1 } })), "replace").length, 1, "its own threshold");
    const replacing = { ...failing(4), replacement: { kind: "health" as const, reason: "health check failed: x", at: T0 - 1 } };
    assert.deepEqual(plan(replica("r1", rec, { vitals: replacing, drainRequested: true, state: "draining" })), [], "not twice");
    assert.deepEqual(plan(replica("r1", rec, { vitals: failing(5), drainRequested: true })), [], "not one that drains already");
    assert.deepEqual(plan(replica("r1", rec, { vitals: failing(5), state: "starting" })), [], "not one still starting (its first check fails its start)");
  });

  it("kills a replica whose ping is unanswered for longer than healthCheckTimeoutS, even while it drains, and never drains it as well", () => {
    const sent = T0 - 31_000;
    assert.deepEqual(plan(replica("r1", rec, { vitals: healthy({ pingSentAt: T0 - 30_000 }) })), [], "at the timeout, not yet");
    assert.deepEqual(plan(replica("r1", rec, { vitals: healthy({ pingSentAt: sent }) })), [{ type: "replace", id: "r1", kind: "liveness", reason: "event loop blocked 31 s" }]);
    const unassigned = planHost(new Map(), records(rec), local({ replicas: [replica("r1", rec, { vitals: healthy({ pingSentAt: sent }) })] }), T0);
    assert.deepEqual(unassigned, [{ type: "replace", id: "r1", kind: "liveness", reason: "event loop blocked 31 s" }], "killed, not also drained");
    const draining = replica("r1", rec, { state: "draining", drainRequested: true, vitals: healthy({ pingSentAt: sent }) });
    assert.deepEqual(ofType(plan(draining), "replace").map((a) => a.kind), ["liveness"], "a blocked loop would never finish draining");
    const drainedForHealth = { ...draining, vitals: healthy({ pingSentAt: sent, replacement: { kind: "health", reason: "health check failed: x", at: T0 - 5000 } }) };
    assert.deepEqual(ofType(plan(drainedForHealth), "replace").map((a) => a.kind), ["liveness"], "a replica drained for its health checks is killed when its loop blocks");
    const killed = { ...draining, vitals: healthy({ pingSentAt: sent, replacement: { kind: "liveness", reason: "event loop blocked 31 s", at: T0 - 1 } }) };
    assert.deepEqual(plan(killed), [], "killed once");
    assert.deepEqual(plan(replica("r1", rec, { state: "starting", vitals: healthy({ pingSentAt: sent }) })), [], "a starting replica is not pinged");
    assert.deepEqual(plan(replica("r1", rec, { vitals: healthy({ pingSentAt: T0 - 3000, healthCheckTimeoutS: 2 }) })).map((a) => a.type), ["replace"], "its own timeout");
  });

  it(`drains a replica whose resident memory was above memoryMiB in ${MEMORY_SAMPLES} samples in a row`, () => {
    const over = healthy({ memoryMiB: 512, rssMiB: [600, 610, 612.4] });
    assert.deepEqual(plan(replica("r1", rec, { vitals: over })), [{ type: "replace", id: "r1", kind: "memory", reason: "memory 612 MiB over 512 MiB" }]);
    assert.deepEqual(plan(replica("r1", rec, { vitals: { ...over, rssMiB: [610, 612] } })), [], "too few samples");
    assert.deepEqual(plan(replica("r1", rec, { vitals: { ...over, rssMiB: [600, 500, 612] } })), [], "one sample under the limit");
    assert.deepEqual(plan(replica("r1", rec, { vitals: { ...over, memoryMiB: null } })), [], "no limit");
    assert.deepEqual(plan(replica("r1", rec, { vitals: over, drainRequested: true, state: "draining" })), [], "not one that drains already");
  });
});

// --- the simulated world -------------------------------------------------

interface FakeProcess {
  id: string;
  deployment: string;
  state: ReplicaProcessState;
  configVersion: string | null;
  settingsKey: string;
  reconfigureSent: { configVersion: string; at: number } | null;
  drainRequested: boolean;
  vitals: ReplicaVitals;
  /** A reconfigure it received and is applying. */
  applying: string | null;
  /** Its event loop is blocked: it answers nothing and does nothing. */
  blocked: boolean;
  /** Its checkHealth() fails. */
  sick: boolean;
  /** Its memory grows past any limit. */
  leaky: boolean;
}

/** The world's processes fail faster than the defaults, so that many are replaced. */
const WORLD_TIMEOUT_S = 5;
const WORLD_THRESHOLD = 3;
/** Replicas of "api" have a memory limit; those of "app" none. */
const API_MEMORY_MIB = 512;
const ANSWERS_PINGS = new Set(["running", "reconfiguring", "draining"]);

const DEPLOYMENTS = ["app", "api"];
const PRESTART = 1;

/** A controller that changes its mind at random, and one host whose processes act on what it is told. */
class SimWorld {
  now = T0;
  readonly records = new Map<string, DeploymentRecord>();
  readonly assignments = new Map<string, ReplicaAssignment>();
  readonly procs = new Map<string, FakeProcess>();
  readonly finished = new Set<string>();
  readonly everSpawned = new Set<string>();
  pooled = 0;
  earlyExitAt: number | null = null;
  /** Replicas killed for a blocked loop, and drained for failed checks or memory. */
  killed = 0;
  drainedForHealth = 0;
  stopping = false;
  /** Chance that a reconfigure message is lost on the way. */
  lossRate = 0.3;
  private seq = 0;
  private code = 0;
  private config = 0;

  constructor(readonly rng: () => number) {
    for (const name of DEPLOYMENTS) this.deploy(name);
  }

  private pick<T>(items: T[]): T | undefined {
    return items[Math.floor(this.rng() * items.length)];
  }

  private deploy(name: string, change: { code?: boolean; config?: boolean; settings?: boolean } = { code: true, config: true }): void {
    const before = this.records.get(name);
    const codeVersion = change.code || !before ? `v${++this.code}` : before.codeVersion;
    const configVersion = change.config || !before ? `cfg${++this.config}` : before.configVersion;
    const maxConcurrentQueries = change.settings || !before ? 1 + Math.floor(this.rng() * 8) : before.spec.maxConcurrentQueries;
    const spec = parseDeploymentSpec({ name, import: `${name}.ts`, maxConcurrentQueries, userConfig: { configVersion } });
    this.records.set(name, { spec, codeVersion, configVersion, generation: (before?.generation ?? 0) + 1, deployedAt: this.now });
  }

  local(): HostLocal {
    return {
      hostId: HOST,
      stopping: this.stopping,
      replicas: new Map([...this.procs].map(([id, p]) => [id, { ...p }])),
      finished: new Set(this.finished),
      prestart: { target: PRESTART, pooled: this.pooled, earlyExitAt: this.earlyExitAt },
    };
  }

  /** One random change by the controller (or none). */
  controllerStep(): void {
    const r = this.rng();
    const name = this.pick(DEPLOYMENTS)!;
    const rec = this.records.get(name)!;
    const a = this.pick([...this.assignments.values()]);
    if (r < 0.2) {
      // A new replica; now and then written before the record of its code (a rollout racing the deploy).
      const ahead = this.rng() < 0.1;
      const codeVersion = ahead ? `v${this.code + 1}` : rec.codeVersion;
      const id = `${name}-r${++this.seq}`;
      this.assignments.set(id, assignment(id, codeVersion, { deployment: name, host: this.rng() < 0.8 ? HOST : "host-b" }));
      if (ahead && this.rng() < 0.7) this.deploy(name);
    } else if (r < 0.3 && a) {
      this.assignments.set(a.id, { ...a, desired: "drain" });
    } else if (r < 0.35 && a) {
      this.assignments.set(a.id, { ...a, host: a.host === HOST ? "host-b" : HOST });
    } else if (r < 0.4 && a) {
      this.assignments.delete(a.id);
    } else if (r < 0.47) {
      this.deploy(name, { config: true });
    } else if (r < 0.52) {
      this.deploy(name, { settings: true });
    } else if (r < 0.55) {
      this.deploy(name, { code: true });
    }
    // The controller collects replicas that ended, and drains those of old code.
    for (const id of this.finished) if (this.rng() < 0.3) this.assignments.delete(id);
    for (const x of this.assignments.values()) {
      if (x.desired === "run" && x.codeVersion !== this.records.get(x.deployment)?.codeVersion && this.rng() < 0.2) this.assignments.set(x.id, { ...x, desired: "drain" });
    }
  }

  /** planHost, checked against the invariants, then carried out. */
  hostStep(): HostAction[] {
    // The host pings every replica that runs, unless its last ping is unanswered.
    for (const p of this.procs.values()) {
      if (ANSWERS_PINGS.has(p.state) && p.vitals.pingSentAt === null) p.vitals = { ...p.vitals, pingSentAt: this.now };
    }
    const actions = planHost(this.assignments, this.records, this.local(), this.now);
    const spawned = new Set<string>();
    const drained = new Set<string>();
    for (const action of actions) {
      switch (action.type) {
        case "spawn": {
          const { assignment: a, record: rec } = action;
          assert.ok(!this.stopping, `${a.id}: nothing is spawned while the host stops`);
          assert.ok(!this.everSpawned.has(a.id), `${a.id}: a replica id is started once, never again`);
          assert.ok(!this.procs.has(a.id) && !spawned.has(a.id), `${a.id}: never two processes for one replica id`);
          const now = this.assignments.get(a.id);
          assert.ok(now && now.host === HOST && now.desired === "run", `${a.id}: spawned only while assigned here to run`);
          assert.equal(rec.codeVersion, now.codeVersion, `${a.id}: spawned with the record of its own code`);
          spawned.add(a.id);
          this.everSpawned.add(a.id);
          if (this.pooled > 0) this.pooled--;
          this.procs.set(a.id, {
            id: a.id,
            deployment: a.deployment,
            state: "starting",
            configVersion: rec.configVersion,
            settingsKey: settingsKey(settingsOf(rec.spec)),
            reconfigureSent: null,
            drainRequested: false,
            vitals: healthy({
              healthCheckTimeoutS: WORLD_TIMEOUT_S,
              healthCheckFailureThreshold: WORLD_THRESHOLD,
              memoryMiB: a.deployment === "api" ? API_MEMORY_MIB : null,
            }),
            applying: null,
            blocked: false,
            sick: false,
            leaky: false,
          });
          break;
        }
        case "drain": {
          const p = this.procs.get(action.id);
          assert.ok(p && !p.drainRequested && !drained.has(action.id), `${action.id}: a drain goes to a live process, once`);
          drained.add(action.id);
          p.drainRequested = true;
          break;
        }
        case "settings": {
          const p = this.procs.get(action.id);
          assert.ok(p && (p.state === "running" || p.state === "reconfiguring"), `${action.id}: settings go to a process that serves`);
          p.settingsKey = settingsKey(action.settings);
          break;
        }
        case "reconfigure": {
          const p = this.procs.get(action.id);
          assert.ok(p && p.state === "running", `${action.id}: a reconfigure goes to a running process`);
          const last = p.reconfigureSent;
          assert.ok(!last || last.configVersion !== action.configVersion || this.now - last.at > RECONFIGURE_RETRY_MS, `${action.id}: not resent within the retry interval`);
          p.reconfigureSent = { configVersion: action.configVersion, at: this.now };
          if (this.rng() >= this.lossRate) {
            p.state = "reconfiguring";
            p.applying = action.configVersion;
          }
          break;
        }
        case "forget":
          assert.ok(!this.assignments.has(action.id), `${action.id}: forgotten only once unassigned`);
          this.finished.delete(action.id);
          break;
        case "replace": {
          const p = this.procs.get(action.id);
          assert.ok(p && ANSWERS_PINGS.has(p.state), `${action.id}: a replacement goes to a live process that runs`);
          const v = p.vitals;
          const prior = v.replacement;
          assert.ok(!prior || (prior.kind !== "liveness" && action.kind === "liveness"), `${action.id}: replaced once (a drained one is killed only if its loop then blocks)`);
          if (action.kind === "liveness") {
            assert.ok(v.pingSentAt !== null && this.now - v.pingSentAt > v.healthCheckTimeoutS * 1000, `${action.id}: killed only when its ping is overdue`);
            assert.ok(p.blocked, `${action.id}: killed only when its loop is blocked`);
            this.exit(p);
            this.killed++;
          } else {
            assert.ok(!p.drainRequested, `${action.id}: a replica already draining is not drained again`);
            if (action.kind === "health") assert.ok(p.sick && v.health.consecutiveFailures >= v.healthCheckFailureThreshold, `${action.id}: drained for its checks only after the threshold`);
            if (action.kind === "memory") assert.ok(p.leaky && v.rssMiB.length >= MEMORY_SAMPLES && v.rssMiB.every((m) => m > (v.memoryMiB ?? Infinity)), `${action.id}: drained for memory only over the limit`);
            p.drainRequested = true;
            p.vitals = { ...v, replacement: { kind: action.kind, reason: action.reason, at: this.now } };
            this.drainedForHealth++;
          }
          break;
        }
        case "prestart":
          assert.ok(!this.stopping, "nothing is prestarted while the host stops");
          assert.ok(![...this.procs.values()].some((p) => p.state === "starting"), "nothing is prestarted while a replica starts");
          this.pooled += action.count;
          assert.ok(this.pooled <= PRESTART, `pool of ${this.pooled} over its target`);
          break;
      }
    }
    // Level-triggered: after one tick, every process that must drain has been asked to, and none that must be replaced is left.
    for (const p of this.procs.values()) {
      const v = p.vitals;
      if (ANSWERS_PINGS.has(p.state)) {
        const overdue = v.pingSentAt !== null && this.now - v.pingSentAt > v.healthCheckTimeoutS * 1000;
        assert.ok(!overdue, `${p.id}: a blocked replica is killed at once`);
        assert.ok(p.drainRequested || v.health.consecutiveFailures < v.healthCheckFailureThreshold, `${p.id}: an unhealthy replica is drained at once`);
      }
      const a = this.assignments.get(p.id);
      if (this.stopping || !a || a.host !== HOST || a.desired === "drain") assert.ok(p.drainRequested, `${p.id}: asked to drain`);
    }
    return actions;
  }

  /**
   * The processes move on: start (or fail), apply a reconfigure, drain and
   * exit, crash now and then; and now and then one turns sick (its checks
   * fail), leaky (its memory grows) or blocks its event loop for good.
   */
  processesStep(chaos: boolean): void {
    for (const p of [...this.procs.values()]) {
      if (p.blocked) continue;
      if (chaos && ANSWERS_PINGS.has(p.state)) {
        const h = this.rng();
        if (h < 0.005) p.blocked = true;
        else if (h < 0.015) p.sick = true;
        else if (h < 0.025) p.leaky = true;
        else if (h < 0.03) p.sick = false;
        if (p.blocked) continue;
      }
      if (ANSWERS_PINGS.has(p.state)) {
        const v = p.vitals;
        const rss = p.leaky ? API_MEMORY_MIB + 100 + this.rng() * 100 : 100;
        const checked = chaos && p.state !== "draining" && this.rng() < 0.5;
        const failures = checked ? (p.sick ? v.health.consecutiveFailures + 1 : 0) : v.health.consecutiveFailures;
        p.vitals = {
          ...v,
          pingSentAt: null,
          rssMiB: [...v.rssMiB, rss].slice(-MEMORY_SAMPLES),
          health: checked ? { lastCheckAt: this.now, consecutiveFailures: failures, ...(p.sick ? { lastError: "sick" } : {}) } : v.health,
        };
      }
      const r = this.rng();
      if (p.drainRequested) {
        if (p.state === "draining" || r < 0.3) this.exit(p);
        else p.state = "draining";
      } else if (p.state === "starting") {
        if (chaos && r < 0.1) this.exit(p);
        else if (r < 0.7) p.state = "running";
      } else if (p.state === "reconfiguring") {
        if (r < 0.6) {
          p.state = "running";
          p.configVersion = p.applying;
          p.applying = null;
        }
      } else if (chaos && p.state === "running" && r < 0.01) {
        this.exit(p);
      }
    }
    if (chaos && this.pooled > 0 && this.rng() < 0.02) {
      this.pooled--;
      this.earlyExitAt = this.now;
    }
  }

  private exit(p: FakeProcess): void {
    this.procs.delete(p.id);
    this.finished.add(p.id);
  }

  step(chaos: boolean): void {
    if (chaos) this.controllerStep();
    this.hostStep();
    this.processesStep(chaos);
    this.now += 1000;
  }
}

describe("planHost: a simulated world", () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]) {
    it(`seed ${seed}: one process per replica, the current config once quiet, and an empty host after a stop`, () => {
      const w = new SimWorld(mulberry32(seed));
      for (let i = 0; i < 600; i++) w.step(true);
      assert.ok(w.everSpawned.size > 20, `the world did something (${w.everSpawned.size} replicas started)`);
      assert.ok(w.killed > 0 && w.drainedForHealth > 0, `replicas were killed and drained (killed ${w.killed}, drained ${w.drainedForHealth})`);

      // Quiet: no changes, no crashes, no lost messages. Every replica assigned here runs what its record says.
      w.lossRate = 0;
      for (let i = 0; i < 40; i++) w.step(false);
      for (const a of w.assignments.values()) {
        const rec = w.records.get(a.deployment)!;
        const p = w.procs.get(a.id);
        if (a.host !== HOST || a.desired === "drain" || w.finished.has(a.id)) {
          assert.ok(!p, `${a.id}: no process when not wanted here`);
          continue;
        }
        if (a.codeVersion !== rec.codeVersion) {
          // Old code keeps serving until the controller drains it; code not yet recorded is not started.
          assert.ok(!p || !p.drainRequested, `${a.id}: a replica of other code is left to the controller`);
          continue;
        }
        assert.ok(p, `${a.id}: a process for every replica assigned here`);
        assert.equal(p.state, "running", `${a.id}: running`);
        assert.equal(p.configVersion, rec.configVersion, `${a.id}: with the current userConfig`);
        assert.equal(p.settingsKey, settingsKey(settingsOf(rec.spec)), `${a.id}: and the current settings`);
      }
      assert.equal(w.pooled, PRESTART, "the prestarted pool is full again");

      // Stop: add a replica to start, then everything drains and nothing new starts.
      w.assignments.set("late", assignment("late", w.records.get("app")!.codeVersion));
      w.stopping = true;
      for (let i = 0; i < 20 && w.procs.size > 0; i++) w.step(false);
      assert.equal(w.procs.size, 0, "a stopping host ends empty, its blocked replicas killed");
      assert.ok(!w.everSpawned.has("late"), "a replica assigned while stopping is not started");
    });
  }
});
