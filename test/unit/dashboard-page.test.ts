/**
 * The dashboard page as served: self-contained, its script valid JavaScript,
 * and the Content-Security-Policy naming exactly its inline style and script.
 * (The browser tests in test/e2e/dashboard.test.ts run it.)
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import vm from "node:vm";
import { dashboardPage } from "../../src/controller/admin-dashboard-api.js";
import { DASHBOARD_SCRIPT } from "../../src/controller/dashboard/script.js";
import { DASHBOARD_STYLE } from "../../src/controller/dashboard/style.js";

const hash = (text: string) => `'sha256-${createHash("sha256").update(text).digest("base64")}'`;

describe("dashboard page", () => {
  it("is served for GET / and /index.html only", () => {
    assert.ok(dashboardPage("GET", "/"));
    assert.ok(dashboardPage("GET", "/index.html"));
    assert.equal(dashboardPage("POST", "/"), undefined);
    assert.equal(dashboardPage("GET", "/api/status"), undefined);
    assert.equal(dashboardPage("GET", "/dashboard"), undefined);
  });

  it("holds its style and script inline, loads nothing from elsewhere, and its CSP allows exactly those", () => {
    const page = dashboardPage("GET", "/");
    assert.ok(page);
    assert.ok(page.body.includes(`<script>${DASHBOARD_SCRIPT}</script>`));
    assert.ok(page.body.includes(`<style>${DASHBOARD_STYLE}</style>`));
    assert.doesNotMatch(page.body, /\b(src|href)\s*=\s*["']?(https?:)?\/\//, "no external resource");
    assert.doesNotMatch(page.body, /<script[^>]+src=/, "no script file to fetch");
    const csp = page.headers["content-security-policy"] ?? "";
    assert.match(csp, /default-src 'none'/);
    assert.ok(csp.includes(`script-src ${hash(DASHBOARD_SCRIPT)}`), csp);
    assert.ok(csp.includes(`style-src ${hash(DASHBOARD_STYLE)}`), csp);
    assert.match(csp, /connect-src 'self'/);
    assert.equal(page.headers["content-length"], String(Buffer.byteLength(page.body)));
  });

  it("has a script that parses, and that never writes HTML from data or puts the token in a URL", () => {
    assert.doesNotThrow(() => new vm.Script(DASHBOARD_SCRIPT, { filename: "dashboard.js" }));
    assert.doesNotMatch(DASHBOARD_SCRIPT, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
    assert.doesNotMatch(DASHBOARD_SCRIPT, /localStorage/, "the token is kept for the tab only (sessionStorage)");
    assert.doesNotMatch(DASHBOARD_SCRIPT, /console\.(log|info|debug)/);
    assert.match(DASHBOARD_SCRIPT, /headers\["authorization"\] = "Bearer " \+ state\.token/);
  });
});
