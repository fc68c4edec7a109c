/** `flotilla status`: the cluster as a table, or as JSON with `--json`. */
import Table from "cli-table3";
import { describeResources } from "../shared/resources.js";
import type { ReplicaView, StatusReport } from "../client/cluster-status.js";

/** A replica's note: why it is pending, being replaced or failed, else its health checks when one failed lately. */
function replicaNote(r: ReplicaView): string {
  if (r.pendingReason) return r.pendingReason;
  if (r.note) return r.note;
  if (r.replacement) return `replacing: ${r.replacement.reason}`;
  if (r.error) return r.error;
  const h = r.health;
  if (h && h.consecutiveFailures > 0) return `health: ${h.consecutiveFailures} failed (${h.lastError ?? "?"})`;
  if (h?.lastCheckAt) return `healthy (checked ${new Date(h.lastCheckAt).toISOString().slice(11, 19)})`;
  return "";
}

/** The latest replacements of each deployment, newest first, with their reasons. */
function replacementLines(report: StatusReport): string[] {
  const lines: string[] = [];
  for (const d of report.deployments) {
    const c = d.healthCounts;
    if (!c) continue;
    const replaced = c.replacements.health + c.replacements.liveness + c.replacements.memory;
    lines.push(
      `health ${d.name}: ${c.checkFailures} failed check(s); replaced ${replaced} (health ${c.replacements.health}, event loop ${c.replacements.liveness}, memory ${c.replacements.memory})`,
    );
    for (const e of d.replacements ?? []) lines.push(`  ${new Date(e.at).toISOString()} ${e.replica} on ${e.host}: ${e.reason}`);
  }
  return lines;
}

/** A table cell holds one line: an error with npm's output in it spans several. */
function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

export function renderStatus(report: StatusReport): string {
  const lines: string[] = [];
  const deployments = new Table({ head: ["DEPLOYMENT", "STATUS", "VERSION", "PACKAGE", "REPLICAS", "QUEUE (wait/active)", "REQ/S", "ROUTE", "MESSAGE"], style: { head: [], border: [] } });
  for (const d of report.deployments) {
    const running = d.replicas.filter((r) => r.state === "running" || r.state === "reconfiguring").length;
    const pkg = d.runtimeEnv ? d.runtimeEnv.hash.slice(0, 12) : "-";
    deployments.push([d.name, d.status, d.version, pkg, `${running}/${d.targetReplicas}`, `${d.queue.waiting}/${d.queue.active}`, d.requestsPerS === undefined ? "-" : d.requestsPerS.toFixed(1), d.routePrefix ?? "-", oneLine(d.message).slice(0, 80)]);
  }
  lines.push(report.deployments.length ? deployments.toString() : "no deployments");

  const replicas = new Table({ head: ["REPLICA", "DEPLOYMENT", "STATE", "VERSION", "HOST", "PID", "IN FLIGHT", "NOTE"], style: { head: [], border: [] } });
  for (const d of report.deployments) {
    for (const r of d.replicas) replicas.push([r.id, d.name, r.state, r.version, r.host ?? "-", r.pid ?? "-", r.inflight, replicaNote(r).slice(0, 80)]);
  }
  if (replicas.length) lines.push(replicas.toString());
  lines.push(...replacementLines(report));

  for (const d of report.deployments) {
    if (d.autoscaling) {
      const last = d.autoscaling.lastDecision ? `; last: ${d.autoscaling.lastDecision.from} → ${d.autoscaling.lastDecision.to} (${d.autoscaling.lastDecision.reason})` : "";
      lines.push(`autoscaling ${d.name}: demand ${d.autoscaling.demand.toFixed(1)}, desired ${d.autoscaling.desired}, actual ${d.autoscaling.actual}${last}`);
    }
  }

  const hosts = new Table({ head: ["HOST", "ALIVE", "TOTAL", "FREE", "REPLICAS"], style: { head: [], border: [] } });
  for (const h of report.hosts) {
    const empty = h.emptyForS !== null && h.emptyForS >= 300 ? ` (empty ${Math.round(h.emptyForS / 60)} min: can be removed)` : "";
    hosts.push([h.id + (h.draining ? " (draining)" : "") + empty, h.alive ? "yes" : "NO", describeResources(h.resources.total) || "none", describeResources(h.resources.free) || "none", h.replicas.length]);
  }
  lines.push(report.hosts.length ? hosts.toString() : "no hosts");
  const pending = describeResources(report.pendingDemand);
  if (pending) lines.push(`pending demand: ${pending} (start hosts with this much free to place the pending replicas)`);
  const leader = report.controllers.find((c) => c.leader);
  lines.push(`controllers: ${report.controllers.map((c) => `${c.id}${c.leader ? " (leader)" : ""}${c.alive ? "" : " (dead)"}`).join(", ") || "none"}${leader ? "" : " — no leader: deploys are not being applied"}`);
  lines.push(`routers: ${report.routers.filter((r) => r.alive).map((r) => `${r.id}:${r.port}`).join(", ") || "none"}`);
  return lines.join("\n");
}
