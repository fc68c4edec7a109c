/**
 * The reconcile tick stays a sequence of named stages: no function in
 * reconcile.ts or its stage files grows past 60 lines (it did once, to 160).
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const MAX_LINES = 60;
const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../src/controller");

/** Every function-like node of a file with its name and its length in lines. */
function functionLengths(fileName: string, text: string): Array<{ name: string; lines: number }> {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true);
  const found: Array<{ name: string; lines: number }> = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && "body" in node && node.body) {
      const first = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
      const last = source.getLineAndCharacterOfPosition(node.getEnd()).line;
      const name = node.name && ts.isIdentifier(node.name) ? node.name.text : `(anonymous at line ${first + 1})`;
      found.push({ name, lines: last - first + 1 });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

describe("reconcile stays in stages", () => {
  it("measures functions, methods and arrows, nested ones too", () => {
    const body = (n: number): string => Array.from({ length: n }, (_, i) => `  const x${i} = ${i};`).join("\n");
    const text = `function long(): void {\n${body(59)}\n}\nclass K {\n  m(): void {\n${body(2)}\n    const f = () => {\n      return 1;\n    };\n  }\n}\n`;
    assert.deepEqual(functionLengths("probe.ts", text), [
      { name: "long", lines: MAX_LINES + 1 },
      { name: "m", lines: 7 },
      { name: "(anonymous at line 66)", lines: 3 },
    ]);
    assert.ok(functionLengths("reconcile.ts", readFileSync(path.join(dir, "reconcile.ts"), "utf8")).some((f) => f.name === "reconcile"), "finds reconcile()");
  });

  it(`has no function over ${MAX_LINES} lines in reconcile.ts or its stages`, () => {
    const files = readdirSync(dir).filter((f) => /^reconcile(-[a-z-]+)?\.ts$/.test(f));
    assert.ok(files.includes("reconcile.ts") && files.length > 1, `stage files: ${files.join(", ")}`);
    for (const f of files) {
      const long = functionLengths(f, readFileSync(path.join(dir, f), "utf8")).filter((fn) => fn.lines > MAX_LINES);
      assert.deepEqual(long, [], `${f}: ${long.map((fn) => `${fn.name} has ${fn.lines} lines`).join(", ")}`);
    }
  });
});
