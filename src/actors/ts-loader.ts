/**
 * TypeScript in a replica process, through tsx: its require hook for CommonJS
 * scope, its ESM hooks for ES module scope (see module-scope.ts).
 *
 * tsx's ESM `register()` API loads tsx and esbuild into the replica's own
 * thread as well as into the loader thread that runs the hooks: memory (about
 * 3 MiB off a running replica's median) for code that an ES module handler
 * mostly never runs. So for ES module scope the replica registers tsx's hooks
 * module (`tsx/esm`, the file `--import tsx/esm` registers) with Node
 * directly, which loads tsx only into the loader thread. The require hook,
 * needed there only when the handler's code reaches
 * `require()` of TypeScript (a `.cts` file, `createRequire`, a CommonJS-scoped
 * `.ts` it imports), is registered the first time that happens: the first
 * TypeScript file Node's CommonJS loader is to compile, or the first require
 * it cannot resolve on its own, loads tsx's require hook and goes on with it.
 * From then on tsx decides, exactly as with tsx's own API.
 */
import Module, { createRequire, register } from "node:module";
import { pathToFileURL } from "node:url";
import { MessageChannel, type MessagePort } from "node:worker_threads";
import { STOP_ESBUILD, withOneShotEsbuild } from "./esbuild-service.js";
import type { HandlerLoader } from "./module-scope.js";

const requireHere = createRequire(import.meta.url);

/** Node's CommonJS loader internals that require hooks (tsx's among them) replace. */
type ExtensionHandler = (this: unknown, module: unknown, filename: string) => void;
interface CommonJsLoader {
  _extensions: Record<string, ExtensionHandler | undefined>;
  _resolveFilename: (this: unknown, ...args: unknown[]) => string;
}
const cjs = Module as unknown as CommonJsLoader;

/** Extensions that Node's own CommonJS loader cannot compile and tsx's require hook can. */
const TS_EXTENSIONS = [".ts", ".cts", ".mts", ".tsx", ".jsx"];

const registered = { cjs: false, esm: false };
/** Undoes the on-first-use triggers (set while they are installed). */
let removeTriggers: (() => void) | undefined;
/** The replica's end of a channel to ts-loader-hooks.ts in the loader thread. */
let loaderThread: MessagePort | undefined;

/** Registers tsx's require hook (once): CommonJS-scoped TypeScript loads through it. */
function registerRequireHook(): void {
  if (registered.cjs) return;
  registered.cjs = true;
  removeTriggers?.();
  withOneShotEsbuild(() => (requireHere("tsx/cjs/api") as { register(): unknown }).register());
}

/**
 * Installs the triggers that register tsx's require hook when CommonJS first
 * needs it, then hand the same call to the hooked loader. Both fire before any
 * of the required module's code runs; a resolve that tsx cannot mend either
 * fails again, the same way.
 */
function installRequireTriggers(): void {
  const resolveFilename = cjs._resolveFilename;
  removeTriggers = () => {
    removeTriggers = undefined;
    cjs._resolveFilename = resolveFilename;
    for (const ext of TS_EXTENSIONS) delete cjs._extensions[ext];
  };
  // Node's own loader would compile these as JavaScript; tsx's require hook compiles TypeScript (an extension it
  // does not list itself goes, as in Node, to its `.js` handler).
  for (const ext of TS_EXTENSIONS) {
    cjs._extensions[ext] = function (module, filename) {
      registerRequireHook();
      (cjs._extensions[ext] ?? cjs._extensions[".js"])?.call(this, module, filename);
    };
  }
  // tsx resolves what Node alone does not: `./x.js` naming `./x.ts`, tsconfig `paths`.
  cjs._resolveFilename = function (...args) {
    try {
      return resolveFilename.apply(this, args);
    } catch (err) {
      if (registered.cjs) throw err;
      registerRequireHook();
      return cjs._resolveFilename.apply(this, args);
    }
  };
}

/** Registers tsx's ESM hooks (once), in Node's loader thread only; tsx's require hook waits for its first use. */
function registerEsmHooks(): void {
  if (registered.esm) return;
  registered.esm = true;
  // Stack traces point into the .ts sources (tsx's register() does the same).
  process.setSourceMapsEnabled(true);
  const { port1, port2 } = new MessageChannel();
  // Compiled JS beside compiled JS; the .ts source when the replica itself runs from source under tsx.
  const hooks = new URL(`./ts-loader-hooks${import.meta.url.endsWith(".ts") ? ".ts" : ".js"}`, import.meta.url);
  // The loader thread starts with the first register() and takes a copy of the environment then.
  withOneShotEsbuild(() => {
    // tsx's hooks need `data` (an empty one: no namespace, the tsconfig tsx finds itself, no load notices).
    register(pathToFileURL(requireHere.resolve("tsx/esm")).href, { data: {} });
    register(hooks.href, { data: { port: port2 }, transferList: [port2] });
  });
  port1.unref();
  loaderThread = port1;
  if (!registered.cjs) installRequireTriggers();
}

/**
 * Stops the esbuild service process that compiled an ES module handler, in
 * the loader thread; call it once the handler has loaded. Where tsx compiled
 * nothing (its disk cache had every file), there is none. esbuild's
 * synchronous calls leave nothing running (see esbuild-service.ts).
 */
export function releaseTypeScriptCompiler(): void {
  loaderThread?.postMessage(STOP_ESBUILD);
}

/** Makes the process ready to load a handler of this kind (a no-op for plain JavaScript). */
export async function prepareTypeScript(loader: HandlerLoader): Promise<void> {
  if (loader === "ts-cjs") registerRequireHook();
  else if (loader === "ts-esm") registerEsmHooks();
}
