/**
 * Imports run one way: every file under src/ belongs to a room, and a room
 * imports only from rooms below it, never from one above or beside it (type
 * imports and dynamic `import()` count too). Lowest first:
 *
 *   errors.ts ← spec ← shared ← (queue, runtime-env) ← (actors, client, autoscaler)
 *     ← (router, host, controller, api) ← cli ← index.ts
 *
 * errors, spec and shared are the base the architecture draws as one: inside
 * it, shared may use spec and errors, spec may use errors.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const SRC = fileURLToPath(new URL("../../src/", import.meta.url));

/** Room → level; a room may import only from rooms of a lower level. */
const LEVELS: ReadonlyMap<string, number> = new Map([
  ["errors.ts", 0],
  ["spec", 1],
  ["shared", 2],
  ["queue", 3],
  ["runtime-env", 3],
  ["actors", 4],
  ["client", 4],
  ["autoscaler", 4],
  ["router", 5],
  ["host", 5],
  ["controller", 5],
  ["api", 5],
  ["cli", 6],
  ["index.ts", 7],
]);

/** The room of a path relative to src/ (`client/status.ts` → `client`, `errors.ts` → `errors.ts`). */
function roomOf(relative: string): string {
  return relative.split("/")[0] ?? relative;
}

/** Why `from` (relative to src/) may not import `to` (relative to src/), or undefined when it may. */
function layerViolation(from: string, to: string): string | undefined {
  const [a, b] = [roomOf(from), roomOf(to)];
  if (a === b) return undefined;
  const [la, lb] = [LEVELS.get(a), LEVELS.get(b)];
  if (la === undefined) return `src/${from} is in no known room ('${a}'): add the room to LEVELS`;
  if (lb === undefined) return `src/${from} imports src/${to}, in no known room ('${b}')`;
  if (lb < la) return undefined;
  return `src/${from} (${a}) imports src/${to} (${b}): ${lb === la ? "rooms on the same level" : `${b} is above ${a}`}`;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(full);
    return /\.(ts|mts)$/.test(e.name) && !e.name.endsWith(".d.ts") ? [full] : [];
  });
}

interface Import { from: string; specifier: string; to: string | undefined }

/** Every import of every file under src/, static, type-only, re-export or dynamic; `to` is set for files under src/. */
function allImports(): Import[] {
  return sourceFiles(SRC).flatMap((file) => {
    const from = path.relative(SRC, file).split(path.sep).join("/");
    const { importedFiles } = ts.preProcessFile(readFileSync(file, "utf8"), true, true);
    return importedFiles.map(({ fileName: specifier }) => {
      if (!specifier.startsWith(".")) return { from, specifier, to: undefined };
      const target = path.resolve(path.dirname(file), specifier.replace(/\.(m?)js$/, ".$1ts"));
      return { from, specifier, to: path.relative(SRC, target).split(path.sep).join("/") };
    });
  });
}

describe("layers", () => {
  it("tells an import that runs one way from one that does not", () => {
    assert.equal(layerViolation("controller/reconcile.ts", "shared/records.ts"), undefined);
    assert.equal(layerViolation("shared/records.ts", "spec/deployment-spec.ts"), undefined);
    assert.equal(layerViolation("cli/main.ts", "router/router.ts"), undefined);
    assert.equal(layerViolation("index.ts", "api/deployment.ts"), undefined);
    assert.equal(layerViolation("client/a.ts", "client/b.ts"), undefined);
    assert.match(layerViolation("client/cluster-status.ts", "controller/placement.ts") ?? "", /controller is above client/);
    assert.match(layerViolation("controller/admin-api.ts", "router/read-body.ts") ?? "", /same level/);
    assert.match(layerViolation("actors/x.ts", "autoscaler/y.ts") ?? "", /same level/);
    assert.match(layerViolation("spec/x.ts", "shared/y.ts") ?? "", /shared is above spec/);
    assert.match(layerViolation("shared/x.ts", "queue/y.ts") ?? "", /queue is above shared/);
    assert.match(layerViolation("api/x.ts", "index.ts") ?? "", /index\.ts is above api/);
    assert.match(layerViolation("gadgets/x.ts", "shared/y.ts") ?? "", /no known room/);
  });

  it("finds the imports of src/, dynamic ones included", () => {
    const imports = allImports();
    assert.ok(imports.some((i) => i.from === "cli/main.ts" && i.to === "router/router.ts"), "cli/main.ts imports the router dynamically");
    assert.ok(imports.some((i) => i.from === "router/router.ts" && i.to === "shared/keys.ts"));
    for (const i of imports) if (i.to !== undefined) assert.ok(!i.to.startsWith(".."), `${i.from} imports ${i.specifier}, outside src/`);
  });

  it("no file imports from a room above it or beside it", () => {
    const violations = allImports().flatMap((i) => {
      const why = i.to === undefined ? undefined : layerViolation(i.from, i.to);
      return why ? [why] : [];
    });
    assert.deepEqual([...new Set(violations)], [], `imports against the layers:\n${violations.join("\n")}`);
  });

  it("only src/queue/ knows BullMQ: no other file imports it, by name or by a path into it", () => {
    const outside = allImports().filter((i) => i.to === undefined && /^bullmq(\/|$)/.test(i.specifier) && !i.from.startsWith("queue/"));
    assert.deepEqual(outside.map((i) => `${i.from} imports ${i.specifier}`), []);
    const mentions = sourceFiles(SRC)
      .filter((file) => !path.relative(SRC, file).startsWith(`queue${path.sep}`))
      .filter((file) => /["'`]bullmq[/"'`]/.test(readFileSync(file, "utf8")))
      .map((file) => path.relative(SRC, file));
    assert.deepEqual(mentions, [], "a require() or path of BullMQ outside src/queue/");
  });
});
