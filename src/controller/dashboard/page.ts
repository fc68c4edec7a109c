/**
 * The dashboard page served at `/` by the admin API: one self-contained HTML
 * document (style and script inline, nothing fetched from elsewhere). It holds
 * no data, so it is served without the token; the script asks for the token
 * and sends it only as a bearer header. The Content-Security-Policy allows
 * exactly this page's own style and script, and requests to the admin API.
 */
import { createHash } from "node:crypto";
import { DASHBOARD_SCRIPT } from "./script.js";
import { DASHBOARD_STYLE } from "./style.js";

const BODY = `
<div id="banner" role="alert" data-testid="banner"></div>
<header class="top">
  <h1>Flotilla</h1>
  <span class="meta" id="namespace"></span>
  <span class="meta" id="updated">connecting...</span>
  <button type="button" class="secondary" id="sign-out">Forget token</button>
</header>
<section id="login" aria-labelledby="login-title">
  <form id="login-form" method="post" autocomplete="off">
    <label id="login-title" for="token">Admin token</label>
    <p class="error" id="login-error" data-testid="login-error"></p>
    <input id="token" name="token" type="password" autocomplete="current-password" placeholder="FLOTILLA_ADMIN_TOKEN">
    <button type="submit" id="sign-in">Sign in</button>
  </form>
</section>
<main id="app" class="hidden">
  <h2>Deployments</h2>
  <p id="no-deployments" class="empty">No deployments yet.</p>
  <div id="deployments" class="grid"></div>
  <section id="detail" data-testid="detail">
    <h2><span id="detail-title"></span> <button type="button" class="secondary" id="close-detail">Close</button></h2>
    <div id="notice" role="status" data-testid="notice"></div>
    <div id="history" data-testid="history"></div>
    <h2>Logs</h2>
    <div id="logs"></div>
  </section>
  <h2>Hosts</h2>
  <div id="hosts"></div>
  <h2>Controllers and routers</h2>
  <div id="processes"></div>
</main>
`;

function sha256(text: string): string {
  return `'sha256-${createHash("sha256").update(text, "utf8").digest("base64")}'`;
}

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Flotilla dashboard</title>
<link rel="icon" href="data:,">
<style>${DASHBOARD_STYLE}</style>
</head>
<body>${BODY}<script>${DASHBOARD_SCRIPT}</script>
</body>
</html>
`;

/** Headers of the page: a strict CSP naming the inline style and script by hash, no caching, no framing. */
export const DASHBOARD_HEADERS: Readonly<Record<string, string>> = {
  "content-type": "text/html; charset=utf-8",
  "content-length": String(Buffer.byteLength(DASHBOARD_HTML)),
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "content-security-policy": [
    "default-src 'none'",
    `script-src ${sha256(DASHBOARD_SCRIPT)}`,
    `style-src ${sha256(DASHBOARD_STYLE)}`,
    "connect-src 'self'",
    "img-src data:",
    "form-action 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
  ].join("; "),
};
