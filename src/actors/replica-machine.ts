/**
 * The replica lifecycle as an XState v5 machine. This file holds transitions
 * only; `replica-runner.ts` provides the effects (import and construct the
 * handler, run the BullMQ worker, drain it).
 *
 * - starting:      import the module, construct, reconfigure(userConfig), open the worker
 * - running:       the worker takes jobs (concurrency = maxConcurrentQueries)
 * - reconfiguring: reconfigure(newConfig) runs in place; the worker keeps serving
 * - draining:      the worker takes no new jobs and finishes in-flight ones, bounded by the graceful timeout
 * - stopped:       drained (or forced after the timeout); the process exits 0
 * - failed:        start failed or the worker broke; the host reports it and the controller replaces it
 */
import { assign, fromPromise, setup } from "xstate";

export interface ReplicaContext {
  gracefulShutdownTimeoutMs: number;
  /** The userConfig version the handler runs with now. */
  configVersion: string | null;
  error: string | null;
  /** True when draining hit the graceful timeout before in-flight work finished. */
  forced: boolean;
  /** A reconfigure that arrived while another was running: applied next. */
  queuedConfig: { userConfig: unknown; configVersion: string } | null;
}

export type ReplicaEvent =
  | { type: "RECONFIGURE"; userConfig: unknown; configVersion: string }
  | { type: "DRAIN" }
  | { type: "SETTINGS"; gracefulShutdownTimeoutMs: number }
  | { type: "FATAL"; error: string };

export interface ReplicaMachineInput {
  gracefulShutdownTimeoutMs: number;
  configVersion: string | null;
}

export const replicaMachine = setup({
  types: {
    context: {} as ReplicaContext,
    events: {} as ReplicaEvent,
    input: {} as ReplicaMachineInput,
  },
  actors: {
    /** Imports and constructs the handler and starts the worker; resolves when it takes jobs. */
    start: fromPromise<void>(async () => {
      throw new Error("replica machine: 'start' actor not provided");
    }),
    /** Calls the handler's reconfigure(userConfig). */
    reconfigure: fromPromise<void, { userConfig: unknown; configVersion: string }>(async () => {
      throw new Error("replica machine: 'reconfigure' actor not provided");
    }),
    /** Closes the worker gracefully: resolves when in-flight jobs are done. */
    drain: fromPromise<void>(async () => {
      throw new Error("replica machine: 'drain' actor not provided");
    }),
  },
  delays: {
    gracefulTimeout: ({ context }) => context.gracefulShutdownTimeoutMs,
  },
}).createMachine({
  id: "replica",
  initial: "starting",
  on: {
    SETTINGS: { actions: assign({ gracefulShutdownTimeoutMs: ({ event }) => event.gracefulShutdownTimeoutMs }) },
  },
  context: ({ input }) => ({
    gracefulShutdownTimeoutMs: input.gracefulShutdownTimeoutMs,
    configVersion: input.configVersion,
    error: null,
    forced: false,
    queuedConfig: null,
  }),
  states: {
    starting: {
      invoke: {
        src: "start",
        onDone: { target: "running" },
        onError: { target: "failed", actions: assign({ error: ({ event }) => errorText(event.error) }) },
      },
      on: {
        DRAIN: { target: "stopped" },
        RECONFIGURE: { actions: assign({ queuedConfig: ({ event }) => ({ userConfig: event.userConfig, configVersion: event.configVersion }) }) },
      },
    },
    running: {
      always: {
        guard: ({ context }) => context.queuedConfig !== null,
        target: "reconfiguring",
      },
      on: {
        RECONFIGURE: {
          target: "reconfiguring",
          actions: assign({ queuedConfig: ({ event }) => ({ userConfig: event.userConfig, configVersion: event.configVersion }) }),
        },
        DRAIN: { target: "draining" },
        FATAL: { target: "failed", actions: assign({ error: ({ event }) => event.error }) },
      },
    },
    reconfiguring: {
      entry: assign({ error: null }),
      invoke: {
        src: "reconfigure",
        input: ({ context }) => context.queuedConfig ?? { userConfig: undefined, configVersion: "" },
        onDone: {
          target: "running",
          actions: assign({
            configVersion: ({ context }) => context.queuedConfig?.configVersion ?? context.configVersion,
            queuedConfig: null,
          }),
        },
        // A bad userConfig never takes a healthy replica down: it keeps serving with the config it had.
        onError: {
          target: "running",
          actions: assign({ error: ({ event }) => `reconfigure failed: ${errorText(event.error)}`, queuedConfig: null }),
        },
      },
      on: {
        RECONFIGURE: {
          target: "reconfiguring",
          reenter: true,
          actions: assign({ queuedConfig: ({ event }) => ({ userConfig: event.userConfig, configVersion: event.configVersion }) }),
        },
        DRAIN: { target: "draining" },
        FATAL: { target: "failed", actions: assign({ error: ({ event }) => event.error }) },
      },
    },
    draining: {
      invoke: {
        src: "drain",
        onDone: { target: "stopped" },
        onError: { target: "stopped", actions: assign({ forced: true }) },
      },
      after: {
        gracefulTimeout: { target: "stopped", actions: assign({ forced: true }) },
      },
    },
    stopped: { type: "final" },
    failed: { type: "final" },
  },
});

export type ReplicaMachineState = "starting" | "running" | "reconfiguring" | "draining" | "stopped" | "failed";

function errorText(err: unknown): string {
  if (err instanceof Error) return err.stack && process.env.FLOTILLA_DEBUG ? err.stack : err.message;
  return String(err);
}
