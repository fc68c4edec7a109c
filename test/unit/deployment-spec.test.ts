/**
 * The deployment spec is the one gate every input goes through: what a user
 * writes becomes a complete, frozen value, or an INVALID_SPEC error whose
 * message names the field and the value that failed.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FlotillaError } from "../../src/errors.js";
import { assertUnique, importRefProblem, parseDeployFile, parseDeploymentSpec, routePath } from "../../src/spec/deployment-spec.js";
import { parseImportRef } from "../../src/spec/import-ref.js";
import { replicaVersionLabel, versionLabel } from "../../src/spec/version-label.js";

const BASE = { name: "echo", import: "echo.ts#Echo" } as const;

/** Runs fn, which must throw INVALID_SPEC; returns the message. */
function rejection(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof FlotillaError, `expected a FlotillaError, got ${String(err)}`);
    assert.equal(err.code, "INVALID_SPEC");
    assert.equal(err.status, 400);
    return err.message;
  }
  assert.fail("expected the input to be rejected");
}

/** The message of rejecting BASE with `patch` applied; asserts it names `field` and every text in `mentions`. */
function rejectsSpec(patch: Record<string, unknown>, field: string, ...mentions: string[]): string {
  const message = rejection(() => parseDeploymentSpec({ ...BASE, ...patch }));
  assert.ok(message.includes(`${field}: `), `message names the field '${field}': ${message}`);
  for (const text of mentions) assert.ok(message.includes(text), `message mentions ${text}: ${message}`);
  return message;
}

function assertDeepFrozen(value: unknown, path = "spec"): void {
  if (value === null || typeof value !== "object") return;
  assert.ok(Object.isFrozen(value), `${path} is frozen`);
  for (const [key, child] of Object.entries(value)) assertDeepFrozen(child, `${path}.${key}`);
}

describe("parseDeploymentSpec: defaults", () => {
  it("fills every default for a minimal spec", () => {
    assert.deepEqual(parseDeploymentSpec(BASE), {
      name: "echo",
      import: "echo.ts#Echo",
      numReplicas: 1,
      routePrefix: "/echo",
      maxConcurrentQueries: 100,
      actorOptions: { numCpus: 1, numGpus: 0, resources: {}, env: {} },
      gracefulShutdownTimeoutS: 20,
      maxRetries: 3,
      healthCheckPeriodS: 10,
      healthCheckTimeoutS: 30,
      healthCheckFailureThreshold: 3,
    });
  });

  it("keeps given values and leaves optional limits unset", () => {
    const spec = parseDeploymentSpec({
      ...BASE,
      numReplicas: 0,
      version: "1.2.3",
      userConfig: { greeting: "hi", n: [1, 2, null] },
      routePrefix: "/api/echo",
      maxConcurrentQueries: 5,
      actorOptions: { numCpus: 0.5, numGpus: 0.25, resources: { memoryGiB: 2 }, env: { OMP_NUM_THREADS: "1" } },
      gracefulShutdownTimeoutS: 1.5,
      requestTimeoutS: 30,
      maxQueuedRequests: 1000,
      maxRetries: 0,
    });
    assert.equal(spec.numReplicas, 0);
    assert.equal(spec.version, "1.2.3");
    assert.deepEqual(spec.userConfig, { greeting: "hi", n: [1, 2, null] });
    assert.equal(spec.routePrefix, "/api/echo");
    assert.deepEqual(spec.actorOptions, { numCpus: 0.5, numGpus: 0.25, resources: { memoryGiB: 2 }, env: { OMP_NUM_THREADS: "1" } });
    assert.equal(spec.requestTimeoutS, 30);
    assert.equal(spec.maxQueuedRequests, 1000);
    assert.equal(spec.maxRetries, 0);
    const minimal = parseDeploymentSpec(BASE);
    assert.equal(minimal.requestTimeoutS, undefined);
    assert.equal(minimal.maxQueuedRequests, undefined);
    assert.equal(minimal.version, undefined);
  });

  it("fills actorOptions defaults field by field", () => {
    assert.deepEqual(parseDeploymentSpec({ ...BASE, actorOptions: { numGpus: 1 } }).actorOptions, { numCpus: 1, numGpus: 1, resources: {}, env: {} });
  });

  it("keeps routePrefix null (no HTTP route)", () => {
    const spec = parseDeploymentSpec({ ...BASE, routePrefix: null });
    assert.equal(spec.routePrefix, null);
    assert.ok("routePrefix" in spec);
  });

  it("fills autoscalingConfig defaults; initialReplicas = minReplicas, and no numReplicas", () => {
    const spec = parseDeploymentSpec({ ...BASE, autoscalingConfig: {} });
    assert.deepEqual(spec.autoscalingConfig, {
      minReplicas: 1,
      maxReplicas: 1,
      initialReplicas: 1,
      targetNumOngoingRequestsPerReplica: 2,
      upscaleDelayS: 30,
      downscaleDelayS: 600,
      metricsIntervalS: 1,
      lookBackPeriodS: 30,
      smoothingFactor: 1,
      upscaleSmoothingFactor: 1,
      downscaleSmoothingFactor: 1,
    });
    assert.equal(spec.numReplicas, undefined, "the autoscaler owns the count: no numReplicas");

    const two = parseDeploymentSpec({ ...BASE, autoscalingConfig: { minReplicas: 2, maxReplicas: 8, smoothingFactor: 0.5 } });
    assert.equal(two.autoscalingConfig?.initialReplicas, 2);
    assert.equal(two.autoscalingConfig?.upscaleSmoothingFactor, 0.5);
    assert.equal(two.autoscalingConfig?.downscaleSmoothingFactor, 0.5);
    assert.equal(two.numReplicas, undefined);

    const initial = parseDeploymentSpec({ ...BASE, autoscalingConfig: { minReplicas: 0, maxReplicas: 8, initialReplicas: 3 } });
    assert.equal(initial.autoscalingConfig?.initialReplicas, 3);
    const zero = parseDeploymentSpec({ ...BASE, autoscalingConfig: { minReplicas: 0 } });
    assert.equal(zero.autoscalingConfig?.maxReplicas, 1);
    assert.equal(zero.autoscalingConfig?.initialReplicas, 0);
  });

  it("returns a deeply frozen value", () => {
    const spec = parseDeploymentSpec({
      ...BASE,
      userConfig: { nested: { list: [{ a: 1 }] } },
      actorOptions: { resources: { memoryGiB: 1 }, env: { A: "b" } },
      autoscalingConfig: { maxReplicas: 3 },
    });
    assertDeepFrozen(spec);
    assert.throws(() => {
      (spec as { numReplicas: number }).numReplicas = 5;
    }, TypeError);
    assert.throws(() => {
      (spec.actorOptions.env as Record<string, string>).B = "c";
    }, TypeError);
  });

  it("does not share state with the input: mutating the input afterwards changes nothing", () => {
    const input = { ...BASE, userConfig: { a: [1] }, actorOptions: { env: { A: "1" } } };
    const spec = parseDeploymentSpec(input);
    input.userConfig.a.push(2);
    input.actorOptions.env.A = "2";
    assert.deepEqual(spec.actorOptions.env, { A: "1" });
    assert.equal(Object.isFrozen(input.userConfig), false, "the caller's object is not frozen behind its back");
  });
});

describe("parseDeploymentSpec: rejections name the field and the value", () => {
  it("rejects an unknown field", () => {
    rejectsSpec({ replicas: 2 }, "replicas", "unknown field", "'replicas'");
    rejectsSpec({ actorOptions: { cpus: 2 } }, "actorOptions.cpus", "unknown field", "'cpus'");
    rejectsSpec({ autoscalingConfig: { min: 1 } }, "autoscalingConfig.min", "'min'");
  });

  it("rejects a wrong type", () => {
    rejectsSpec({ actorOptions: { numCpus: "1" } }, "actorOptions.numCpus", "expected number", '"1"');
    rejectsSpec({ numReplicas: "3" }, "numReplicas", '"3"');
    rejectsSpec({ routePrefix: 5 }, "routePrefix", "5");
    rejectsSpec({ actorOptions: [] }, "actorOptions", "[]");
  });

  it("rejects a missing name or import", () => {
    assert.match(rejection(() => parseDeploymentSpec({ name: "echo" })), /import: is required/);
    assert.match(rejection(() => parseDeploymentSpec({ import: "echo.ts" })), /name: is required/);
    assert.match(rejection(() => parseDeploymentSpec(null)), /\(spec\): .*null/);
    assert.match(rejection(() => parseDeploymentSpec([])), /\(spec\): .*\[\]/);
  });

  it("rejects names that are not DNS labels", () => {
    rejectsSpec({ name: "Echo" }, "name", '"Echo"', "DNS label");
    rejectsSpec({ name: "-echo" }, "name", '"-echo"');
    rejectsSpec({ name: "echo_1" }, "name", '"echo_1"');
    rejectsSpec({ name: "" }, "name", '""');
    const long = "a".repeat(64);
    rejectsSpec({ name: long }, "name", "63", long);
    assert.equal(parseDeploymentSpec({ ...BASE, name: "a".repeat(63) }).name.length, 63);
  });

  it("rejects bad replica counts and limits", () => {
    rejectsSpec({ numReplicas: -1 }, "numReplicas", "-1");
    rejectsSpec({ numReplicas: 1.5 }, "numReplicas", "1.5");
    rejectsSpec({ numReplicas: 10_001 }, "numReplicas", "10001");
    rejectsSpec({ maxConcurrentQueries: 0 }, "maxConcurrentQueries", "(got 0)");
    rejectsSpec({ gracefulShutdownTimeoutS: 0 }, "gracefulShutdownTimeoutS", "(got 0)");
    rejectsSpec({ maxRetries: -1 }, "maxRetries", "-1");
    rejectsSpec({ actorOptions: { numCpus: -0.5 } }, "actorOptions.numCpus", "-0.5");
    rejectsSpec({ actorOptions: { resources: { "9lives": 1 } } }, "actorOptions.resources.9lives", "9lives");
    rejectsSpec({ actorOptions: { env: { "BAD-NAME": "x" } } }, "actorOptions.env.BAD-NAME", "BAD-NAME");
    rejectsSpec({ routePrefix: "echo" }, "routePrefix", '"echo"');
    rejectsSpec({ routePrefix: "/a b" }, "routePrefix", '"/a b"');
  });

  it("names NaN and Infinity as such, not as null", () => {
    // YAML's `.nan` / `.inf` reach the parser as NaN / Infinity.
    const nan = rejectsSpec({ actorOptions: { numCpus: Number.NaN } }, "actorOptions.numCpus", "NaN");
    const inf = rejectsSpec({ gracefulShutdownTimeoutS: Number.POSITIVE_INFINITY }, "gracefulShutdownTimeoutS", "Infinity");
    assert.doesNotMatch(nan, /got null/, "NaN is shown as NaN");
    assert.doesNotMatch(inf, /got null/, "Infinity is shown as Infinity");
  });

  it("refuses imports outside the app directory or of the wrong kind", () => {
    const refused: Array<[string, RegExp]> = [
      ["../x.ts", /'\.\.' is not allowed/],
      ["dir/../../x.ts", /'\.\.' is not allowed/],
      ["/abs.ts", /absolute paths/],
      ["http://x/y.ts", /URLs and node: builtins/],
      ["node:fs", /URLs and node: builtins/],
      ["a\\b.ts", /forward slashes/],
      ["x.txt", /\.ts, \.mts, \.js or \.mjs/],
      ["x.ts#1bad", /'1bad' is not a valid export name/],
      ["#Echo", /module path is empty/],
    ];
    for (const [ref, why] of refused) {
      const message = rejectsSpec({ import: ref }, "import", JSON.stringify(ref));
      assert.match(message, why, `import ${ref}`);
      assert.match(importRefProblem(ref) ?? "", why, `importRefProblem(${ref})`);
    }
    rejectsSpec({ import: "" }, "import", '""');
  });

  it("splits a reference at its last '#', the export being default without one", () => {
    assert.deepEqual(parseImportRef("dir/echo.ts#Echo"), { modulePath: "dir/echo.ts", exportName: "Echo" });
    assert.deepEqual(parseImportRef("echo.ts"), { modulePath: "echo.ts", exportName: "default" });
    assert.deepEqual(parseImportRef("a#b.ts#X"), { modulePath: "a#b.ts", exportName: "X" });
    assert.deepEqual(parseImportRef("echo.ts#"), { modulePath: "echo.ts", exportName: "" });
    assert.match(importRefProblem("echo.ts#") ?? "", /'' is not a valid export name/);
  });

  it("labels versions by the spec's version, or the code version without one", () => {
    assert.equal(versionLabel({ spec: { version: "2" }, codeVersion: "2-abc" }), "2");
    assert.equal(versionLabel({ spec: {}, codeVersion: "auto-1234" }), "auto-1234");
    const current = { spec: { version: "2" }, codeVersion: "2-new" };
    assert.equal(replicaVersionLabel({ version: "2", codeVersion: "2-new" }, current), "2");
    assert.equal(replicaVersionLabel({ version: "1", codeVersion: "1-old" }, current), "1");
    assert.equal(replicaVersionLabel({ version: "2", codeVersion: "2-old" }, current), "2-old", "same label, other code: told apart");
    assert.equal(replicaVersionLabel({ version: "2", codeVersion: "2-old" }, undefined), "2");
  });

  it("accepts module files inside the app directory, with or without an export", () => {
    for (const ref of ["echo.ts", "echo.ts#Echo", "dir/sub/model.mjs#default", "a.js#$handler", "./x.mts#_X1"]) {
      assert.equal(importRefProblem(ref), undefined, ref);
      assert.equal(parseDeploymentSpec({ ...BASE, import: ref }).import, ref);
    }
  });

  it("rejects inconsistent autoscaling bounds and negative delays", () => {
    rejectsSpec({ autoscalingConfig: { minReplicas: 5, maxReplicas: 2 } }, "autoscalingConfig.minReplicas", "5", "2");
    rejectsSpec({ autoscalingConfig: { minReplicas: 1, maxReplicas: 3, initialReplicas: 4 } }, "autoscalingConfig.initialReplicas", "4");
    rejectsSpec({ autoscalingConfig: { upscaleDelayS: -1 } }, "autoscalingConfig.upscaleDelayS", "-1");
    rejectsSpec({ autoscalingConfig: { downscaleDelayS: -5 } }, "autoscalingConfig.downscaleDelayS", "-5");
    rejectsSpec({ autoscalingConfig: { targetNumOngoingRequestsPerReplica: 0 } }, "autoscalingConfig.targetNumOngoingRequestsPerReplica", "(got 0)");
    rejectsSpec({ autoscalingConfig: { maxReplicas: 0 } }, "autoscalingConfig.maxReplicas", "(got 0)");
  });

  it("rejects numReplicas together with autoscalingConfig", () => {
    rejectsSpec({ numReplicas: 2, autoscalingConfig: {} }, "numReplicas", "autoscalingConfig");
  });

  it("lists every problem of a spec, not just the first", () => {
    const message = rejection(() => parseDeploymentSpec({ ...BASE, name: "Bad", numReplicas: -1, replicas: 1 }));
    assert.match(message, /name: /);
    assert.match(message, /numReplicas: /);
    assert.match(message, /replicas: unknown field/);
  });
});

describe("parseDeploymentSpec: health checks and memory", () => {
  it("takes fractional periods and timeouts, and a memory limit that reserves memoryMiB", () => {
    const spec = parseDeploymentSpec({ ...BASE, healthCheckPeriodS: 0.5, healthCheckTimeoutS: 2.5, healthCheckFailureThreshold: 1, actorOptions: { memoryMiB: 512 } });
    assert.equal(spec.healthCheckPeriodS, 0.5);
    assert.equal(spec.healthCheckTimeoutS, 2.5);
    assert.equal(spec.healthCheckFailureThreshold, 1);
    assert.equal(spec.actorOptions.memoryMiB, 512);
    assert.equal(parseDeploymentSpec(BASE).actorOptions.memoryMiB, undefined, "no limit by default");
  });

  it("rejects bad health settings and memory limits, naming the field", () => {
    rejectsSpec({ healthCheckPeriodS: 0 }, "healthCheckPeriodS", "0");
    rejectsSpec({ healthCheckTimeoutS: -1 }, "healthCheckTimeoutS", "-1");
    rejectsSpec({ healthCheckFailureThreshold: 1.5 }, "healthCheckFailureThreshold", "1.5");
    rejectsSpec({ healthCheckFailureThreshold: 0 }, "healthCheckFailureThreshold", "0");
    rejectsSpec({ actorOptions: { memoryMiB: 0 } }, "actorOptions.memoryMiB", "0");
    rejectsSpec({ actorOptions: { resources: { memoryMiB: 512 } } }, "actorOptions.resources", "actorOptions.memoryMiB");
  });
});

describe("parseDeployFile", () => {
  it("parses every spec of a file, in order", () => {
    const specs = parseDeployFile({ deployments: [BASE, { name: "ingress", import: "ingress.ts", routePrefix: "/" }, { name: "worker", import: "w.ts", routePrefix: null }] });
    assert.deepEqual(specs.map((s) => [s.name, s.routePrefix]), [["echo", "/echo"], ["ingress", "/"], ["worker", null]]);
    for (const spec of specs) assertDeepFrozen(spec);
    assert.deepEqual(parseDeployFile({ deployments: [] }), []);
  });

  it("rejects duplicate names, naming both indices", () => {
    const message = rejection(() => parseDeployFile({ deployments: [BASE, { name: "other", import: "o.ts" }, { ...BASE, routePrefix: "/e2" }] }));
    assert.match(message, /deployments\[2\]\.name: 'echo' is already used by deployments\[0\]/);
  });

  it("rejects duplicate route prefixes, allowing several null ones", () => {
    const message = rejection(() => parseDeployFile({ deployments: [BASE, { name: "b", import: "b.ts", routePrefix: "/echo" }] }));
    assert.match(message, /deployments\[1\]\.routePrefix: '\/echo' is already the route of 'echo'/);
    const implicit = rejection(() => parseDeployFile({ deployments: [{ name: "a", import: "a.ts", routePrefix: "/b" }, { name: "b", import: "b.ts" }] }));
    assert.match(implicit, /deployments\[1\]\.routePrefix: '\/b'/, "the default /<name> counts too");
    assert.equal(parseDeployFile({ deployments: [{ ...BASE, routePrefix: null }, { name: "b", import: "b.ts", routePrefix: null }] }).length, 2);
  });

  it("counts a trailing slash as the same route, and deployed routes unless this apply replaces them", () => {
    assert.deepEqual(["/", "//", "/a", "/a/", "/a//", "/a/b/"].map(routePath), ["/", "/", "/a", "/a", "/a", "/a/b"]);
    const slash = rejection(() => parseDeployFile({ deployments: [BASE, { name: "b", import: "b.ts", routePrefix: "/echo/" }] }));
    assert.match(slash, /deployments\[1\]\.routePrefix: '\/echo\/' is already the route of 'echo'/);
    const deployed = [parseDeploymentSpec({ name: "a", import: "a.ts", routePrefix: "/x" }), parseDeploymentSpec(BASE)];
    const b = parseDeploymentSpec({ name: "b", import: "b.ts", routePrefix: "/x/" });
    assert.match(rejection(() => assertUnique([b], deployed, () => "b")), /b\.routePrefix: '\/x\/' is already the route of deployment 'a'/);
    const movedA = parseDeploymentSpec({ name: "a", import: "a.ts", routePrefix: "/y" });
    assert.doesNotThrow(() => assertUnique([movedA, b], deployed), "a moves away from /x in the same apply");
    assert.doesNotThrow(() => assertUnique([parseDeploymentSpec(BASE)], deployed), "re-applying echo keeps its own route");
  });

  it("names the index of the invalid spec", () => {
    const message = rejection(() => parseDeployFile({ deployments: [BASE, { name: "b", import: "b.ts", numReplicas: -1 }] }));
    assert.match(message, /deployments\[1\]\.numReplicas: .*-1/);
    assert.doesNotMatch(message, /deployments\[0\]/);
    assert.match(rejection(() => parseDeployFile({ deployments: [BASE, 7] })), /deployments\[1\]: .*7/);
  });

  it("rejects a file that is not { deployments: [...] }", () => {
    assert.match(rejection(() => parseDeployFile(null)), /\(spec\): .*null/);
    assert.match(rejection(() => parseDeployFile([BASE])), /\(spec\): /);
    assert.match(rejection(() => parseDeployFile({ deployments: {} })), /deployments: .*\{\}/);
    assert.match(rejection(() => parseDeployFile({ deployments: [], extra: 1 })), /extra: unknown field 'extra'/);
    assert.match(rejection(() => parseDeployFile({})), /deployments: is required/);
  });
});
