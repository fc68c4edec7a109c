/**
 * The folder of this runtime's package.json: what `import "flotilla"` must
 * reach from a deployment's package, so a handler and the replica running it
 * share one copy of the runtime (one module instance, whatever the package's
 * own dependencies hold).
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

let cached: string | undefined;

/** Walks up from this file (src/ or dist/ alike) to the package.json named "flotilla". */
export function runtimePackageRoot(): string {
  if (cached !== undefined) return cached;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = path.join(dir, "package.json");
    if (existsSync(manifest)) {
      const name = (JSON.parse(readFileSync(manifest, "utf8")) as { name?: unknown }).name;
      if (name === "flotilla") return (cached = dir);
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no package.json named "flotilla" above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}
