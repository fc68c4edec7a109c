/** The runtimeEnv field of the deployment spec: defaults and clear field errors. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FlotillaError } from "../../src/errors.js";
import { parseDeployFile, parseDeploymentSpec } from "../../src/spec/deployment-spec.js";

const refused = (input: unknown, message: RegExp) => () =>
  assert.throws(() => parseDeploymentSpec(input, "deployments[0]"), (err: unknown) => err instanceof FlotillaError && err.code === "INVALID_SPEC" && message.test(err.message));

describe("runtimeEnv in the deployment spec", () => {
  it("fills excludes with [] and keeps workingDir as written", () => {
    const spec = parseDeploymentSpec({ name: "s", import: "model.ts#Summarizer", runtimeEnv: { workingDir: "./summarizer" } });
    assert.deepEqual(spec.runtimeEnv, { workingDir: "./summarizer", excludes: [] });
    const again = parseDeploymentSpec(spec);
    assert.deepEqual(again, spec, "a parsed spec parses again to itself");
    assert.equal(parseDeploymentSpec({ name: "s", import: "m.ts" }).runtimeEnv, undefined);
  });

  it("accepts the issue's example file", () => {
    const [spec] = parseDeployFile({ deployments: [{ name: "summarizer", import: "model.ts#Summarizer", runtimeEnv: { workingDir: "./summarizer", excludes: ["*.log", "data/raw/**"] } }] });
    assert.deepEqual(spec?.runtimeEnv?.excludes, ["*.log", "data/raw/**"]);
  });

  it("names the field of an unknown key", refused({ name: "s", import: "m.ts", runtimeEnv: { workingDir: ".", pip: ["x"] } }, /deployments\[0\]\.runtimeEnv\.pip: unknown field 'pip'/));
  it("requires workingDir", refused({ name: "s", import: "m.ts", runtimeEnv: {} }, /deployments\[0\]\.runtimeEnv\.workingDir: is required/));
  it("refuses an empty workingDir", refused({ name: "s", import: "m.ts", runtimeEnv: { workingDir: "" } }, /deployments\[0\]\.runtimeEnv\.workingDir: .*got ""/));
  it("refuses excludes that are not a list of strings", refused({ name: "s", import: "m.ts", runtimeEnv: { workingDir: ".", excludes: "*.log" } }, /deployments\[0\]\.runtimeEnv\.excludes: .*got "\*\.log"/));
  it("refuses a multi-line exclude", refused({ name: "s", import: "m.ts", runtimeEnv: { workingDir: ".", excludes: ["a\nb"] } }, /deployments\[0\]\.runtimeEnv\.excludes\[0\]: a pattern is one line/));
});
