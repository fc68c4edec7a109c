/**
 * esbuild, which tsx runs to compile TypeScript, keeps what it started alive
 * after use. Its asynchronous API (tsx's ESM hooks, in Node's loader thread)
 * keeps a service process (~12 MiB). Its synchronous API (tsx's require hook;
 * tsx's ESM hooks too, for a CommonJS module that an ES module imports) keeps
 * a worker thread (~8 MiB) that runs such a service in turn. A replica needs
 * neither once its handler has loaded.
 */
import { createRequire } from "node:module";

/** The message that asks the loader thread to stop its esbuild. */
export const STOP_ESBUILD = "flotilla:stop-esbuild";

const requireHere = createRequire(import.meta.url);

/** Requires a module as tsx requires it, from tsx's own package (so esbuild is tsx's instance). */
function requireFromTsx(id: string): unknown {
  return createRequire(requireHere.resolve("tsx/package.json"))(id);
}

/**
 * Stops this thread's esbuild service process; esbuild starts another when
 * next asked to compile asynchronously. A thread that has not loaded esbuild
 * has none to stop.
 */
export function stopEsbuild(): void {
  void (requireFromTsx("esbuild") as { stop(): Promise<void> }).stop();
}

/**
 * Runs `load` (which loads esbuild, or starts a thread that will) with
 * esbuild's synchronous calls made in a process of their own each (its
 * ESBUILD_WORKER_THREADS=0 mode), so they leave nothing running: no worker
 * thread, and no service process under one, which stopping the thread would
 * leave unreaped. Each such call costs a process start (28 ms on a 2-core VM,
 * against 4 ms through the worker thread), paid only for a file that tsx's
 * disk cache does not hold yet. esbuild reads the setting once, as it loads;
 * a thread takes a copy of the environment as it starts. A value in the
 * environment already stands, and the environment is as it was afterwards.
 */
export function withOneShotEsbuild<T>(load: () => T): T {
  const before = process.env.ESBUILD_WORKER_THREADS;
  if (before === undefined) process.env.ESBUILD_WORKER_THREADS = "0";
  try {
    return load();
  } finally {
    if (before === undefined) delete process.env.ESBUILD_WORKER_THREADS;
  }
}
