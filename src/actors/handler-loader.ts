/**
 * Turns `path/to/module.ts#Export` into a callable handler. The module must
 * resolve (after symlinks) to a file inside the app directory; nothing else is
 * ever imported.
 */
import { realpath } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { importRefProblem, parseImportRef } from "../spec/import-ref.js";
import { handlerLoader, type HandlerLoader } from "./module-scope.js";

export interface RequestContext {
  /** Fires when the request's requestTimeoutS passes, the replica is forced to stop, or an async request is cancelled. */
  signal: AbortSignal;
  /**
   * Reports an async request's progress (a number or a JSON value of at most 4 KiB), shown by its poll;
   * resolves once stored. For other requests it does nothing.
   */
  progress(value: unknown): Promise<void>;
}

/** A loaded deployment: a function, or an instance of the exported class. */
export interface LoadedHandler {
  call(request: unknown, context: RequestContext): unknown;
  reconfigure?(userConfig: unknown): unknown;
  /** The handler's own health check: throws or rejects when it is unhealthy. */
  checkHealth?(): unknown;
  /** "class" or "function", for logs and status. */
  kind: "class" | "function";
}

/** Resolves a module path inside appDir, refusing anything that leaves it (`..`, absolute, symlinks out). */
export async function resolveInAppDir(appDir: string, modulePath: string): Promise<string> {
  const problem = importRefProblem(modulePath);
  if (problem) throw new Error(`import '${modulePath}': ${problem}`);
  const root = await realpath(appDir);
  let resolved: string;
  try {
    resolved = await realpath(path.resolve(root, modulePath));
  } catch {
    throw new Error(`import '${modulePath}': no such file in the app directory ${root}`);
  }
  const rel = path.relative(root, resolved);
  if (rel.startsWith("..") || path.isAbsolute(rel)) {
    throw new Error(`import '${modulePath}': resolves to ${resolved}, outside the app directory ${root}`);
  }
  return resolved;
}

function isClass(value: unknown): value is new () => object {
  return typeof value === "function" && /^class[\s{]/.test(Function.prototype.toString.call(value));
}

/**
 * A module compiled to CommonJS (a `.ts` file outside a `"type": "module"` package, or a build's output) reaches
 * `import()` as `{ default: module.exports }`; its exports, marked `__esModule`, are what its source exported.
 */
function moduleExports(namespace: Record<string, unknown>): Record<string, unknown> {
  const inner = namespace.default as Record<string, unknown> | null | undefined;
  return typeof inner === "object" && inner !== null && inner.__esModule === true ? inner : namespace;
}

/** A CommonJS module's exports as import() would show them: the source's own exports, or `default` = module.exports. */
function requiredExports(exports: unknown): Record<string, unknown> {
  if (typeof exports === "object" && exports !== null && (exports as { __esModule?: unknown }).__esModule === true) return exports as Record<string, unknown>;
  return { ...(typeof exports === "object" && exports !== null ? (exports as Record<string, unknown>) : {}), default: exports };
}

/** Makes a loader ready before a module that needs it loads (in a replica: registers tsx's hooks). */
export type PrepareLoader = (loader: HandlerLoader) => Promise<void>;

/** Imports the module and builds the handler; a class is constructed with no arguments. */
export async function loadHandler(appDir: string, ref: string, prepare?: PrepareLoader): Promise<LoadedHandler> {
  const problem = importRefProblem(ref);
  if (problem) throw new Error(`import '${ref}': ${problem}`);
  const { modulePath, exportName } = parseImportRef(ref);
  const file = await resolveInAppDir(appDir, modulePath);
  const loader = handlerLoader(file);
  await prepare?.(loader);
  // CommonJS-scoped TypeScript is required, as Node would load it: through tsx's require hook alone.
  const mod = loader === "ts-cjs" ? requiredExports(createRequire(file)(file)) : moduleExports((await import(pathToFileURL(file).href)) as Record<string, unknown>);
  if (!(exportName in mod)) {
    const available = Object.keys(mod).join(", ") || "none";
    throw new Error(`import '${ref}': the module has no export '${exportName}' (exports: ${available})`);
  }
  const exported = mod[exportName];
  if (isClass(exported)) {
    const instance = new exported() as { call?: unknown; reconfigure?: unknown; checkHealth?: unknown };
    if (typeof instance.call !== "function") {
      throw new Error(`import '${ref}': class ${exported.name} has no call(request) method`);
    }
    const call = instance.call as (req: unknown, ctx: RequestContext) => unknown;
    const reconfigure = typeof instance.reconfigure === "function" ? (instance.reconfigure as (c: unknown) => unknown) : undefined;
    const checkHealth = typeof instance.checkHealth === "function" ? (instance.checkHealth as () => unknown) : undefined;
    return {
      kind: "class",
      call: (req, ctx) => call.call(instance, req, ctx),
      ...(reconfigure ? { reconfigure: (c: unknown) => reconfigure.call(instance, c) } : {}),
      ...(checkHealth ? { checkHealth: () => checkHealth.call(instance) } : {}),
    };
  }
  if (typeof exported === "function") {
    const fn = exported as (req: unknown, ctx: RequestContext) => unknown;
    return { kind: "function", call: (req, ctx) => fn(req, ctx) };
  }
  if (typeof exported === "object" && exported !== null && typeof (exported as { call?: unknown }).call === "function") {
    const obj = exported as { call: (r: unknown, c: RequestContext) => unknown; reconfigure?: (c: unknown) => unknown; checkHealth?: () => unknown };
    return {
      kind: "class",
      call: (req, ctx) => obj.call(req, ctx),
      ...(typeof obj.reconfigure === "function" ? { reconfigure: (c: unknown) => obj.reconfigure?.(c) } : {}),
      ...(typeof obj.checkHealth === "function" ? { checkHealth: () => obj.checkHealth?.() } : {}),
    };
  }
  throw new Error(`import '${ref}': export '${exportName}' is a ${typeof exported}, not a class or function`);
}
