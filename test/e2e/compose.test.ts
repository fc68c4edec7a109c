/**
 * The Docker Compose file is valid and wires the cluster the way the docs say:
 * it must satisfy the Compose specification's JSON schema, and its resolved form
 * must have Redis with AOF, a router on :8000, scalable hosts with a runtimeEnv
 * cache volume and nothing of the project mounted, a cli service that mounts
 * the project it deploys, and every Flotilla process pointed at the compose Redis.
 * Needs no Docker: the file is read as Compose reads it (merge keys,
 * interpolation) and checked against the schema. Where the `docker-compose`
 * binary is on the PATH, `docker-compose config` must accept the file too, and
 * the same checks run on what it prints.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import { interpolate, parseComposeFile } from "../helpers/compose-file.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const FLOTILLA_SERVICES = ["controller", "router", "host"] as const;
const ENV = { ...process.env, FLOTILLA_NAMESPACE: "flotilla-compose-test" };

type Service = Record<string, unknown>;
interface ComposeConfig {
  services: Record<string, Service>;
}

function asComposeConfig(parsed: unknown, from: string): ComposeConfig {
  assert.ok(parsed && typeof parsed === "object" && "services" in parsed, `${from} has no services`);
  return parsed as ComposeConfig;
}

/** The file as Compose reads it, validated against the Compose specification's schema. */
function schemaConfig(): ComposeConfig {
  return asComposeConfig(parseComposeFile(readFileSync(path.join(root, "docker-compose.yml"), "utf8"), ENV), "docker-compose.yml");
}

/** Whether a `docker-compose` binary is on the PATH (only then is `docker-compose config` checked). */
function hasDockerCompose(): boolean {
  const run = spawnSync("docker-compose", ["version"], { encoding: "utf8", timeout: 60_000 });
  return !(run.error && (run.error as NodeJS.ErrnoException).code === "ENOENT");
}

/** `docker-compose config` prints the resolved file; any failure is a test failure, never a skip. */
function composeConfig(): ComposeConfig {
  const run = spawnSync("docker-compose", ["-f", "docker-compose.yml", "config"], {
    cwd: root,
    encoding: "utf8",
    env: ENV,
    timeout: 60_000,
  });
  if (run.error) assert.fail(`docker-compose config could not run: ${run.error.message}`);
  assert.equal(run.status, 0, `docker-compose -f docker-compose.yml config exited ${run.status}:\n${run.stderr}${run.stdout}`);
  return asComposeConfig(parse(run.stdout) as unknown, `docker-compose config output:\n${run.stdout}`);
}

function service(config: ComposeConfig, name: string): Service {
  const s = config.services[name];
  assert.ok(s, `service '${name}' is missing; services: ${Object.keys(config.services).join(", ")}`);
  return s;
}

/** A command as one string, whether written as a list or a string. */
function commandLine(s: Service): string {
  const c = s.command;
  return Array.isArray(c) ? c.map(String).join(" ") : String(c ?? "");
}

/** Environment as a map, from either the map or the `KEY=value` list form. */
function environment(s: Service): Record<string, string> {
  const env = s.environment;
  if (Array.isArray(env)) {
    return Object.fromEntries(env.map((e: unknown) => {
      const text = String(e);
      const eq = text.indexOf("=");
      return eq < 0 ? [text, ""] : [text.slice(0, eq), text.slice(eq + 1)];
    }));
  }
  if (env && typeof env === "object") return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v ?? "")]));
  return {};
}

interface Mount { source: string; target: string; readOnly: boolean }

/** Volumes from either the short `src:dst[:ro]` or the long `{type, source, target}` form. */
function mounts(s: Service): Mount[] {
  const vols = Array.isArray(s.volumes) ? (s.volumes as unknown[]) : [];
  return vols.map((v) => {
    if (typeof v === "string") {
      const [source = "", target = "", mode = ""] = v.split(":");
      return { source, target, readOnly: mode.split(",").includes("ro") };
    }
    const o = v as { source?: string; target?: string; read_only?: boolean };
    return { source: o.source ?? "", target: o.target ?? "", readOnly: o.read_only === true };
  });
}

/** Published host ports, from either the short `"8000:8000"` or the long `{published, target}` form. */
function publishedPorts(s: Service): Array<{ published: string; target: string }> {
  const ports = Array.isArray(s.ports) ? (s.ports as unknown[]) : [];
  return ports.map((p) => {
    if (typeof p === "string" || typeof p === "number") {
      const parts = String(p).split(":");
      const target = (parts.pop() ?? "").split("/")[0] ?? "";
      return { published: parts.pop() ?? "", target };
    }
    const o = p as { published?: unknown; target?: unknown };
    return { published: String(o.published ?? ""), target: String(o.target ?? "") };
  });
}

/** Loads a config once; every test asks for it, so a failure fails each of them (not cancels). */
function once(load: () => ComposeConfig): () => ComposeConfig {
  let resolved: { config: ComposeConfig } | { error: unknown } | undefined;
  return () => {
    if (!resolved) {
      try {
        resolved = { config: load() };
      } catch (error) {
        resolved = { error };
      }
    }
    if ("error" in resolved) throw resolved.error;
    return resolved.config;
  };
}

const readers: Array<{ name: string; accepted: string; loadConfig: () => ComposeConfig }> = [
  { name: "docker-compose.yml, read as Compose reads it", accepted: "satisfies the Compose specification's schema", loadConfig: once(schemaConfig) },
];
if (hasDockerCompose()) {
  readers.push({ name: "docker-compose.yml, resolved by docker-compose config", accepted: "is accepted by docker-compose config", loadConfig: once(composeConfig) });
}

describe("the Compose file reader", () => {
  it("rejects a file that breaks the Compose specification, naming the place", () => {
    const valid = readFileSync(path.join(root, "docker-compose.yml"), "utf8");
    assert.throws(() => parseComposeFile(valid.replace("stop_grace_period:", "stop_grace_perod:"), ENV), /\/services\/host .*stop_grace_perod/);
    assert.throws(() => parseComposeFile(valid.replace('"8000:8000"', '"80a0:8000"'), ENV), /\/services\/router\/ports\/0 must match format "ports"/);
    assert.throws(() => parseComposeFile(valid.replace("interval: 2s", "interval: soon"), ENV), /\/services\/redis\/healthcheck\/interval must match format "duration"/);
    assert.throws(() => parseComposeFile("services:\n  web:\n    image: [1, 2]\n", ENV), /\/services\/web\/image must be string/);
  });

  it("interpolates variables the way Compose does", () => {
    const env = { SET: "a", EMPTY: "" };
    assert.equal(interpolate("${SET:-b} ${EMPTY:-b} ${EMPTY-b} ${UNSET-b} $SET $$SET ${UNSET}", env, "x"), "a b  b a $SET ");
    assert.throws(() => interpolate("${UNSET:?needs it}", env, "services.x.image"), /services\.x\.image: required variable UNSET is missing: needs it/);
  });
});

for (const { name, accepted, loadConfig } of readers) describe(name, () => {
  it(`${accepted} and defines the redis, controller, router and host services`, () => {
    const config = loadConfig();
    for (const name of ["redis", ...FLOTILLA_SERVICES]) service(config, name);
  });

  it("runs Redis with append-only persistence on a volume and a ping healthcheck", () => {
    const config = loadConfig();
    const redis = service(config, "redis");
    assert.match(commandLine(redis), /--appendonly\s+yes/);
    assert.ok(mounts(redis).some((m) => m.target === "/data"), "redis keeps /data on a volume");
    const healthcheck = redis.healthcheck as { test?: unknown } | undefined;
    assert.match([healthcheck?.test ?? ""].flat().map(String).join(" "), /redis-cli\s+ping/);
  });

  it("starts each Flotilla process with its own command", () => {
    const config = loadConfig();
    assert.match(commandLine(service(config, "controller")), /^controller\b/);
    assert.match(commandLine(service(config, "router")), /^router\b/);
    assert.match(commandLine(service(config, "host")), /^host\b/);
  });

  it("publishes the router on port 8000", () => {
    const config = loadConfig();
    const router = service(config, "router");
    assert.match(commandLine(router), /--port\s+8000\b/);
    assert.match(commandLine(router), /--bind\s+0\.0\.0\.0\b/);
    assert.ok(
      publishedPorts(router).some((p) => p.published === "8000" && p.target === "8000"),
      `router ports: ${JSON.stringify(router.ports)}`,
    );
  });

  it("keeps hosts scalable, with their runtimeEnv cache on a volume and nothing of the project mounted", () => {
    const config = loadConfig();
    const host = service(config, "host");
    assert.equal(host.container_name, undefined, "a container_name would stop `--scale host=N`");
    assert.deepEqual(publishedPorts(host), [], "fixed host ports would stop `--scale host=N`");
    assert.ok(host.stop_grace_period, "hosts need time to drain their replicas on stop");
    const cacheDir = /--cache-dir\s+(\S+)/.exec(commandLine(host))?.[1];
    assert.ok(cacheDir, `the host command sets --cache-dir: ${commandLine(host)}`);
    const cache = mounts(host).find((m) => m.target === cacheDir);
    assert.ok(cache, `the cache is on a volume; host volumes: ${JSON.stringify(host.volumes)}`);
    const volumes = (config as unknown as { volumes?: Record<string, unknown> }).volumes ?? {};
    assert.ok(cache.source in volumes, `the cache volume '${cache.source}' is a named volume`);
    assert.equal(cache.readOnly, false);
    const binds = mounts(host).filter((m) => m.source.startsWith(".") || m.source.startsWith("/"));
    assert.deepEqual(binds, [], "hosts get their code from deploys, not from a mount");
  });

  it("mounts the project into the cli service, which deploys from it, and publishes Redis on loopback only", () => {
    const config = loadConfig();
    const cli = service(config, "cli");
    const project = mounts(cli).find((m) => m.target === cli.working_dir);
    assert.ok(project, `the cli runs in its project mount; volumes ${JSON.stringify(cli.volumes)}, working_dir ${String(cli.working_dir)}`);
    assert.equal(path.resolve(root, project.source), path.join(root, "examples"), "the examples by default (FLOTILLA_PROJECT unset)");
    const redisPorts = publishedPorts(service(config, "redis"));
    assert.deepEqual(redisPorts.map((p) => p.target), ["6379"]);
    const ports = service(config, "redis").ports as unknown[];
    assert.ok(ports.every((p) => (typeof p === "string" ? p.startsWith("127.0.0.1:") : (p as { host_ip?: string }).host_ip === "127.0.0.1")), `Redis only on 127.0.0.1: ${JSON.stringify(ports)}`);
  });

  it("points every Flotilla service at the compose Redis, after it is healthy", () => {
    const config = loadConfig();
    const names = Object.keys(config.services).filter((n) => n !== "redis");
    for (const name of names) {
      const s = service(config, name);
      const env = environment(s);
      assert.ok(env.REDIS_URL, `${name} sets no REDIS_URL`);
      const url = new URL(env.REDIS_URL);
      assert.equal(url.protocol, "redis:", `${name} REDIS_URL ${env.REDIS_URL}`);
      assert.equal(url.hostname, "redis", `${name} REDIS_URL must name the redis service, got ${env.REDIS_URL}`);
      assert.equal(url.port || "6379", "6379", `${name} REDIS_URL ${env.REDIS_URL}`);
      assert.equal(env.FLOTILLA_NAMESPACE, "flotilla-compose-test", `${name} takes FLOTILLA_NAMESPACE from the environment`);
      const dependsOn = s.depends_on as Record<string, { condition?: string }> | string[] | undefined;
      const onRedis = Array.isArray(dependsOn) ? undefined : dependsOn?.redis;
      assert.equal(onRedis?.condition, "service_healthy", `${name} must wait for a healthy redis`);
    }
  });
});
