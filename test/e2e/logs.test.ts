/**
 * `flotilla logs`: the lines every replica of a deployment printed, on every
 * host, collected through Redis; `-f` follows new lines; the admin API serves
 * the same; credentials never reach the collected lines.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { CLI, httpRequest, loggedPort, TestCluster } from "../helpers/cluster.js";
import { waitFor } from "../helpers/wait.js";
import type { LogLine } from "../../src/shared/log-stream.js";

describe("flotilla logs", { timeout: 180_000 }, () => {
  let cluster: TestCluster;
  let adminPort: number;

  before(async () => {
    cluster = await TestCluster.start({ label: "logs", hosts: [{ id: "h1", cpus: 2 }, { id: "h2", cpus: 2, args: ["--log-max-lines", "500"] }] });
    adminPort = await loggedPort(cluster.processes.find((p) => p.name.startsWith("controller"))!, "admin API listening");
    await cluster.deploy([{ name: "chatty", import: "chatty.ts", version: "1", numReplicas: 2, actorOptions: { numCpus: 1 } }]);
  });

  after(async () => {
    await cluster?.stop();
  });

  /** Sends requests until a replica on each host has printed `word` (replicas spread over both hosts). */
  async function sayOnEveryHost(word: string): Promise<Map<string, number>> {
    const d = await cluster.waitForReplicas("chatty", 2);
    assert.deepEqual(d.replicas.map((r) => r.host).sort(), ["h1", "h2"]);
    const pids = new Map<string, number>();
    await waitFor(`both replicas to say ${word}`, async () => {
      const res = await httpRequest(cluster.url(`/chatty?word=${word}`));
      const body = JSON.parse(res.body) as { pid: number };
      pids.set(res.headers.get("x-flotilla-replica") ?? "", body.pid);
      return pids.size === 2;
    });
    return pids;
  }

  it("prints what every replica printed on stdout and stderr, oldest first, with replica id and host, credentials blanked", async () => {
    const pids = await sayOnEveryHost("first");
    const out = await waitFor(
      "logs to show both replicas' lines",
      async () => {
        const r = await cluster.cli(["logs", "chatty"]);
        return r.code === 0 && [...pids].every(([id, pid]) => r.stdout.includes(`${id} h`) && r.stdout.includes(`said first from ${pid}`)) ? r.stdout : undefined;
      },
      { timeoutMs: 15_000, describe: async () => (await cluster.cli(["logs", "chatty"])).stdout.slice(-2000) },
    );
    for (const [id, pid] of pids) {
      const line = out.split("\n").find((l) => l.includes(`said first from ${pid}`));
      assert.match(line ?? "", new RegExp(`^\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z ${id} h[12] out said first from ${pid}$`), out);
    }
    assert.match(out, / err complained first via redis:\/\/app:\*\*\*@db\.internal:6379 with authorization: \[redacted\]/);
    assert.doesNotMatch(out, /hunter2|s3cr3t/, "no credential reaches the collected lines");
    assert.match(out, / INFO replica running/, "the runtime's own log lines, readable");

    const json = await cluster.cli(["logs", "chatty", "--json", "--since", "10m"]);
    const lines = json.stdout.trim().split("\n").map((l) => JSON.parse(l) as LogLine);
    const times = lines.map((l) => l.at);
    assert.deepEqual(times, [...times].sort((a, b) => a - b), "oldest first");
    assert.deepEqual(new Set(lines.filter((l) => l.line.startsWith("said first")).map((l) => l.host)), new Set(["h1", "h2"]), "lines from both hosts");
    const [oneId] = [...pids.keys()];
    const one = await cluster.cli(["logs", "chatty", "--replica", oneId!, "--json"]);
    const only = one.stdout.trim().split("\n").map((l) => JSON.parse(l) as LogLine);
    assert.ok(only.length > 0 && only.every((l) => l.replica === oneId), "--replica keeps that replica's lines only");
    assert.equal((await cluster.cli(["logs", "chatty", "--since", "0s"])).stdout.includes("said first"), false, "--since leaves older lines out");

    const api = await httpRequest(`http://127.0.0.1:${adminPort}/api/deployments/chatty/logs?replica=${oneId}&limit=2&since=1h`);
    assert.equal(api.status, 200, api.body);
    const apiLines = (JSON.parse(api.body) as { lines: LogLine[] }).lines;
    assert.equal(apiLines.length, 2);
    assert.ok(apiLines.every((l) => l.replica === oneId));
    assert.equal((await httpRequest(`http://127.0.0.1:${adminPort}/api/deployments/nope/logs`)).status, 404);
    assert.equal((await httpRequest(`http://127.0.0.1:${adminPort}/api/deployments/chatty/logs?since=yesterdayish`)).status, 400);
    const missing = await cluster.cli(["logs", "nope"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /NOT_FOUND/);
  });

  it("-f prints a line printed after it started, until Ctrl-C", async () => {
    const child = spawn(process.execPath, [CLI, "--redis", cluster.redisUrl, "--namespace", cluster.namespace, "logs", "chatty", "-f", "--since", "10m"], {
      env: { ...process.env, FLOTILLA_LOG_PRETTY: "0" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    try {
      // Once it printed `ready` (from its history or as a new line), it has printed its history: `later` can only come as a new line.
      await sayOnEveryHost("ready");
      await waitFor("logs -f to print a line", () => stdout.includes("said ready from"), { timeoutMs: 15_000, describe: () => ({ stdout, stderr }) });
      await sayOnEveryHost("later");
      await waitFor("the new line in the followed output", () => stdout.includes("said later from"), { timeoutMs: 15_000, describe: () => ({ stdout, stderr }) });
      child.kill("SIGINT");
      assert.equal(await exited, 0, stderr);
      for (const word of ["ready", "later"]) {
        const said = stdout.split("\n").filter((l) => l.includes(` out said ${word} from `));
        assert.equal(new Set(said).size, said.length, `no line printed twice: ${said.join("\n")}`);
      }
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });
});
