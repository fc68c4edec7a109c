/**
 * How a handler module is loaded, decided the way Node decides a file's
 * module system: `.js`/`.mjs` load as they are; `.mts` is an ES module; a
 * `.ts` file is an ES module inside a `"type": "module"` package and CommonJS
 * anywhere else (the nearest package.json decides; none at all means CommonJS).
 *
 * TypeScript in CommonJS scope needs only tsx's require hook, which runs in
 * the replica's own thread. ES module scope needs tsx's ESM hooks, which Node
 * runs on a loader thread of its own: about 11 MiB more per process (see
 * ts-loader.ts).
 */
import { readFileSync } from "node:fs";
import path from "node:path";

export type HandlerLoader = "js" | "ts-cjs" | "ts-esm";

export const HANDLER_LOADERS: readonly HandlerLoader[] = ["js", "ts-cjs", "ts-esm"];

export function handlerLoader(file: string): HandlerLoader {
  if (/\.m?js$/.test(file)) return "js";
  if (file.endsWith(".mts")) return "ts-esm";
  return packageType(path.dirname(file)) === "module" ? "ts-esm" : "ts-cjs";
}

/** The `type` of the nearest package.json above `dir`, as Node reads it (an unreadable one counts as none). */
function packageType(dir: string): unknown {
  for (let current = dir; ; ) {
    let text: string | undefined;
    try {
      text = readFileSync(path.join(current, "package.json"), "utf8");
    } catch {
      text = undefined;
    }
    if (text !== undefined) {
      try {
        return (JSON.parse(text) as { type?: unknown }).type;
      } catch {
        return undefined;
      }
    }
    const parent = path.dirname(current);
    if (parent === current) return undefined;
    current = parent;
  }
}
