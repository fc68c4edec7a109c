/** The replica lifecycle machine with stand-in effects and a simulated clock: transitions only. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createActor, fromPromise, SimulatedClock } from "xstate";
import { replicaMachine } from "../../src/actors/replica-machine.js";

function deferred(): { promise: Promise<void>; resolve(): void; reject(err: Error): void } {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function setupActor(effects: { start?: () => Promise<void>; reconfigure?: (cfg: unknown) => Promise<void>; drain?: () => Promise<void> }) {
  const clock = new SimulatedClock();
  const machine = replicaMachine.provide({
    actors: {
      start: fromPromise(effects.start ?? (async () => undefined)),
      reconfigure: fromPromise(({ input }: { input: { userConfig: unknown; configVersion: string } }) => (effects.reconfigure ?? (async () => undefined))(input.userConfig)),
      drain: fromPromise(effects.drain ?? (async () => undefined)),
    },
  });
  const actor = createActor(machine, { clock, input: { gracefulShutdownTimeoutMs: 20_000, configVersion: "c1" } });
  actor.start();
  return { actor, clock };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe("replica machine", () => {
  it("goes starting → running → draining → stopped", async () => {
    const drain = deferred();
    const { actor } = setupActor({ drain: () => drain.promise });
    assert.equal(actor.getSnapshot().value, "starting");
    await tick();
    assert.equal(actor.getSnapshot().value, "running");
    actor.send({ type: "DRAIN" });
    assert.equal(actor.getSnapshot().value, "draining");
    drain.resolve();
    await tick();
    assert.equal(actor.getSnapshot().value, "stopped");
    assert.equal(actor.getSnapshot().context.forced, false);
  });

  it("fails when the start fails, with the error", async () => {
    const { actor } = setupActor({ start: async () => Promise.reject(new Error("model weights not found")) });
    await tick();
    assert.equal(actor.getSnapshot().value, "failed");
    assert.equal(actor.getSnapshot().context.error, "model weights not found");
  });

  it("stops after the graceful timeout when in-flight work never finishes, and marks it forced", async () => {
    const { actor, clock } = setupActor({ drain: () => new Promise(() => undefined) });
    await tick();
    actor.send({ type: "DRAIN" });
    clock.increment(19_999);
    assert.equal(actor.getSnapshot().value, "draining");
    clock.increment(1);
    assert.equal(actor.getSnapshot().value, "stopped");
    assert.equal(actor.getSnapshot().context.forced, true);
  });

  it("picks up a new graceful timeout without a restart", async () => {
    const { actor, clock } = setupActor({ drain: () => new Promise(() => undefined) });
    await tick();
    actor.send({ type: "SETTINGS", gracefulShutdownTimeoutMs: 1000 });
    actor.send({ type: "DRAIN" });
    clock.increment(1000);
    assert.equal(actor.getSnapshot().value, "stopped");
  });

  it("reconfigures in place: running → reconfiguring → running with the new config version", async () => {
    const seen: unknown[] = [];
    const { actor } = setupActor({ reconfigure: async (cfg) => void seen.push(cfg) });
    await tick();
    actor.send({ type: "RECONFIGURE", userConfig: { threshold: 0.99 }, configVersion: "c2" });
    assert.equal(actor.getSnapshot().value, "reconfiguring");
    await tick();
    assert.equal(actor.getSnapshot().value, "running");
    assert.equal(actor.getSnapshot().context.configVersion, "c2");
    assert.deepEqual(seen, [{ threshold: 0.99 }]);
  });

  it("keeps serving with the old config when reconfigure throws, and reports the error", async () => {
    const { actor } = setupActor({ reconfigure: async () => Promise.reject(new Error("bad threshold")) });
    await tick();
    actor.send({ type: "RECONFIGURE", userConfig: { threshold: "x" }, configVersion: "c2" });
    await tick();
    assert.equal(actor.getSnapshot().value, "running");
    assert.equal(actor.getSnapshot().context.configVersion, "c1");
    assert.equal(actor.getSnapshot().context.error, "reconfigure failed: bad threshold");
  });

  it("applies a config that arrived while starting once it runs", async () => {
    const start = deferred();
    const seen: unknown[] = [];
    const { actor } = setupActor({ start: () => start.promise, reconfigure: async (cfg) => void seen.push(cfg) });
    actor.send({ type: "RECONFIGURE", userConfig: { n: 2 }, configVersion: "c2" });
    start.resolve();
    await tick();
    await tick();
    assert.equal(actor.getSnapshot().value, "running");
    assert.equal(actor.getSnapshot().context.configVersion, "c2");
    assert.deepEqual(seen, [{ n: 2 }]);
  });

  it("stops at once when drained while still starting", () => {
    const { actor } = setupActor({ start: () => new Promise(() => undefined) });
    actor.send({ type: "DRAIN" });
    assert.equal(actor.getSnapshot().value, "stopped");
  });
});
