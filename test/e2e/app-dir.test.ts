/**
 * TypeScript handlers in an app directory of the user's own, outside this
 * package: no package.json at all (Node treats the files as CommonJS), and a
 * `"type": "module"` package beside it. Both load with no build step, with
 * relative imports, classes, reconfigure and ESM-only syntax where allowed;
 * an ES module handler reaches CommonJS TypeScript too.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { httpRequest, TestCluster } from "../helpers/cluster.js";
import { waitFor } from "../helpers/wait.js";

const FILES: Record<string, string> = {
  // No package.json above these: CommonJS to Node, ESM syntax in the source.
  "model.ts": `import { greet } from "./lib/greet";
export class Greeter {
  private prefix = "hello";
  reconfigure(config: { prefix: string }): void { this.prefix = config.prefix; }
  call(request: { query: Record<string, string> }): string { return greet(this.prefix, request.query.name ?? "nobody"); }
}
`,
  "lib/greet.ts": `export function greet(prefix: string, name: string): string { return \`\${prefix}, \${name}\`; }
`,
  "fn.ts": `interface Req { path: string }
export default function where(request: Req): { path: string; kind: string } { return { path: request.path, kind: typeof module }; }
`,
  // The package by its name, as a user's module imports it (node_modules/flotilla is linked to this package).
  "made.ts": `import { response } from "flotilla";
export default function made(): unknown { return response({ status: 201, headers: { "x-made": "yes" }, body: { made: true } }); }
`,
  // .mts is an ES module wherever it is.
  "tla.mts": `const answer: number = await Promise.resolve(7);
export default function tla(): { answer: number } { return { answer }; }
`,
  // An ES module package: top-level await and import.meta work here.
  "esm/package.json": `{ "type": "module" }
`,
  "esm/top.ts": `const started: number = await Promise.resolve(42);
export default function top(): { started: number; file: string } { return { started, file: import.meta.url.split("/").pop() ?? "" }; }
`,
  // An ES module handler reaching TypeScript every other way: `./x.js` naming x.ts, a .cts module imported and
  // required, and a stack trace that names lines of the .ts source (types removed above the line it reports).
  "esm/mixed.ts": `import { createRequire } from "node:module";
import { twice } from "./twice.js";
import legacy from "./legacy.cts";
interface Unused {
  a: number;
  b: string;
}
type AlsoUnused = Unused | null;
function whereAmI(): string { return String(new Error("here").stack).split("\\n")[1] ?? ""; }
const require = createRequire(import.meta.url);
const settings = require("./settings.cts") as { retries: number };
export default function mixed(): unknown {
  return { twice: twice(21), legacy: (legacy as { name: string }).name, retries: settings.retries, where: whereAmI() };
}
`,
  "esm/twice.ts": `export const twice = (n: number): number => n * 2;
`,
  "esm/legacy.cts": `const name: string = "legacy";
module.exports = { name };
`,
  "esm/settings.cts": `export const retries: number = 3;
`,
  // Its first require names a CommonJS-scoped .ts module by `.js`, which Node alone cannot resolve.
  "esm/requires-js.ts": `import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const { greet } = require("../lib/greet.js") as { greet(prefix: string, name: string): string };
let missing = "";
try { require("./nowhere.js"); } catch (err) { missing = (err as { code?: string }).code ?? String(err); }
export default function requiresJs(): unknown { return { greeting: greet("hey", "ts"), missing }; }
`,
};

/** Processes whose parent is `pid` (zombies included), from /proc. */
function childProcesses(pid: number): string[] {
  const children: string[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue;
    }
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so read after the last ')'.
    const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(ppid) === pid) children.push(`${entry} ${stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"))} ${state}`);
  }
  return children;
}

describe("TypeScript handlers in a user's own app directory", () => {
  const appDir = mkdtempSync(path.join(os.tmpdir(), "flotilla-userapp-"));
  let cluster: TestCluster;

  before(async () => {
    for (const [file, text] of Object.entries(FILES)) {
      mkdirSync(path.dirname(path.join(appDir, file)), { recursive: true });
      writeFileSync(path.join(appDir, file), text);
    }
    mkdirSync(path.join(appDir, "node_modules"));
    symlinkSync(fileURLToPath(new URL("../..", import.meta.url)), path.join(appDir, "node_modules", "flotilla"));
    // tsx's disk cache off: every replica compiles its handler, as on a host's first start of new code.
    cluster = await TestCluster.start({ label: "appdir", appDir, hosts: [{ cpus: 2, env: { TSX_DISABLE_CACHE: "1" } }] });
  });

  after(async () => {
    await cluster?.stop();
    rmSync(appDir, { recursive: true, force: true });
  });

  it("serves a class and a default function from .ts files that Node would treat as CommonJS", async () => {
    await cluster.deploy([
      { name: "greeter", import: "model.ts#Greeter", userConfig: { prefix: "hi" }, actorOptions: { numCpus: 0.2 } },
      { name: "where", import: "fn.ts", actorOptions: { numCpus: 0.2 } },
    ]);
    const greeting = await httpRequest(cluster.url("/greeter?name=ada"));
    assert.equal(greeting.status, 200, greeting.body);
    assert.equal(greeting.body, "hi, ada");
    const where = await httpRequest(cluster.url("/where/x"));
    assert.equal(where.status, 200, where.body);
    assert.deepEqual(JSON.parse(where.body), { path: "/where/x", kind: "object" });
  });

  it("lets a CommonJS-scoped .ts module import the package by its name", async () => {
    await cluster.deploy([{ name: "made", import: "made.ts", actorOptions: { numCpus: 0.2 } }]);
    const res = await httpRequest(cluster.url("/made"));
    assert.equal(res.status, 201, res.body);
    assert.equal(res.headers.get("x-made"), "yes");
    assert.deepEqual(JSON.parse(res.body), { made: true });
  });

  it("serves a .ts file of a \"type\": \"module\" package and an .mts file, top-level await included", async () => {
    await cluster.deploy([
      { name: "top", import: "esm/top.ts", actorOptions: { numCpus: 0.2 } },
      { name: "tla", import: "tla.mts", actorOptions: { numCpus: 0.2 } },
    ]);
    const res = await httpRequest(cluster.url("/top"));
    assert.equal(res.status, 200, res.body);
    assert.deepEqual(JSON.parse(res.body), { started: 42, file: "top.ts" });
    const mts = await httpRequest(cluster.url("/tla"));
    assert.equal(mts.status, 200, mts.body);
    assert.deepEqual(JSON.parse(mts.body), { answer: 7 });
  });

  it("lets an ES module handler import `.js` names of .ts files, import and require .cts modules, and report .ts source lines", async () => {
    await cluster.deploy([{ name: "mixed", import: "esm/mixed.ts", actorOptions: { numCpus: 0.2 } }]);
    const res = await httpRequest(cluster.url("/mixed"));
    assert.equal(res.status, 200, res.body);
    const body = JSON.parse(res.body) as { twice: number; legacy: string; retries: number; where: string };
    assert.deepEqual({ ...body, where: undefined }, { twice: 42, legacy: "legacy", retries: 3, where: undefined });
    const line = FILES["esm/mixed.ts"]!.split("\n").findIndex((text) => text.includes('new Error("here")')) + 1;
    assert.match(body.where, new RegExp(`esm/mixed\\.ts:${line}:`), `a stack frame at mixed.ts line ${line}`);
  });

  it("lets an ES module handler require a CommonJS-scoped .ts module by its `.js` name; a missing module stays MODULE_NOT_FOUND", async () => {
    await cluster.deploy([{ name: "requires-js", import: "esm/requires-js.ts", actorOptions: { numCpus: 0.2 } }]);
    const res = await httpRequest(cluster.url("/requires-js"));
    assert.equal(res.status, 200, res.body);
    assert.deepEqual(JSON.parse(res.body), { greeting: "hey, ts", missing: "MODULE_NOT_FOUND" });
  });

  it("leaves no compiler process (nor a zombie of one) under a replica once it has compiled its handler", async () => {
    await cluster.deploy([
      { name: "cold-cjs", import: "model.ts#Greeter", actorOptions: { numCpus: 0.2 } },
      { name: "cold-esm", import: "esm/mixed.ts", actorOptions: { numCpus: 0.2 } },
    ]);
    for (const name of ["cold-cjs", "cold-esm"]) {
      assert.equal((await httpRequest(cluster.url(`/${name}`))).status, 200);
      const pid = (await cluster.deployment(name))?.replicas.find((r) => r.state === "running")?.pid;
      assert.ok(pid, `a running replica of ${name}`);
      await waitFor(`replica ${name} (pid ${pid}) to have no child processes`, () => childProcesses(pid).length === 0 || undefined, {
        describe: () => childProcesses(pid),
      });
    }
  });

  it("names the missing export of a CommonJS-scoped module, listing the ones it has", async () => {
    await cluster.deploy([{ name: "missing", import: "model.ts#Nope", actorOptions: { numCpus: 0.2 } }], { wait: false });
    const view = await waitFor("deployment missing to be UNHEALTHY", async () => {
      const d = await cluster.deployment("missing");
      return d?.status === "UNHEALTHY" ? d : undefined;
    }, { describe: () => cluster.deployment("missing") });
    assert.match(view.message, /no export 'Nope' \(exports: Greeter\)/);
  });
});
