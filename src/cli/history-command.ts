/** `flotilla history NAME` and `flotilla rollback NAME`: a deployment's revisions, and returning to one. */
import Table from "cli-table3";
import type { Redis } from "ioredis";
import type { History } from "../client/revisions.js";
import { readHistory } from "../client/revisions.js";
import { rollbackDeployment } from "../client/rollback.js";
import type { Keys } from "../shared/keys.js";
import { followRollout } from "./deploy-command.js";

function time(ms: number): string {
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function renderHistory(history: History): string {
  if (history.revisions.length === 0) return `${history.deployment}: no revisions recorded (it was last deployed before revisions were kept)`;
  const table = new Table({ head: ["REV", "APPLIED", "FROM", "VERSION", "OUTCOME", "SOURCE-REV"], style: { head: [], border: [] } });
  for (const r of history.revisions) {
    const outcome = !r.error ? r.outcome : r.outcome === "failed" ? `failed: ${r.error.slice(0, 70)}` : r.outcome === "rolled back" ? `rolled back (failed: ${r.error.slice(0, 50)})` : r.outcome;
    table.push([
      `${r.revision}${r.revision === history.current ? " *" : ""}`,
      time(r.appliedAt),
      `${r.source.user}@${r.source.host}`,
      r.version,
      outcome,
      r.rollbackOf !== undefined ? `rollback of ${r.rollbackOf}` : "-",
    ]);
  }
  return `${table.toString()}\n* current revision${history.exists ? "" : " (the deployment no longer exists)"}`;
}

export async function historyCommand(redis: Redis, keys: Keys, name: string, options: { json: boolean; out: NodeJS.WriteStream }): Promise<void> {
  const history = await readHistory(redis, keys, name);
  options.out.write(options.json ? `${JSON.stringify(history, null, 2)}\n` : `${renderHistory(history)}\n`);
}

export async function rollbackCommand(redis: Redis, keys: Keys, name: string, options: { to?: number; wait: boolean; timeoutS: number; out: NodeJS.WriteStream }): Promise<void> {
  const result = await rollbackDeployment(redis, keys, name, options.to !== undefined ? { to: options.to } : {});
  options.out.write(
    `${name}: rolling back from revision ${result.from} to revision ${result.rollbackOf} as revision ${result.revision ?? "?"} (generation ${result.generation}${result.rollout ? ", rolling update" : ""})\n`,
  );
  if (options.wait) await followRollout(redis, keys, [result], options);
}
