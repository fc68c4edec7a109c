/**
 * The dashboard's script, run by the browser. Plain JavaScript in a string (no
 * build step for the page): it must not contain a backtick or a dollar-brace.
 * It polls the admin API every second with the token as a bearer header, and
 * builds the page with DOM calls and textContent only (no HTML from data).
 */
export const DASHBOARD_SCRIPT = String.raw`
"use strict";
(function () {
  var TOKEN_KEY = "flotilla.adminToken";
  var POLL_MS = 1000;
  var CHART_MS = 5 * 60 * 1000;
  var REQUEST_TIMEOUT_MS = 4000;
  var state = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    needToken: false,
    status: null,
    updatedAt: 0,
    apiError: null,
    selected: null,
    history: null,
    historySig: "",
    historyError: null,
    confirm: null,
    busy: false,
    rates: {},
    decisions: {},
    logs: {},
    cards: {},
    sigs: {}
  };

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      for (var key in attrs) {
        var value = attrs[key];
        if (value === undefined || value === null || value === false) continue;
        if (key === "text") node.textContent = String(value);
        else if (key === "className") node.className = value;
        else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), value);
        else node.setAttribute(key, String(value));
      }
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === undefined || child === null || child === false) continue;
      node.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
    }
    return node;
  }

  function ApiError(status, code, message) {
    this.status = status;
    this.code = code;
    this.message = message;
  }

  async function api(method, path, body) {
    var headers = {};
    if (state.token) headers["authorization"] = "Bearer " + state.token;
    if (body !== undefined) headers["content-type"] = "application/json";
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, REQUEST_TIMEOUT_MS);
    var res;
    try {
      res = await fetch(path, { method: method, headers: headers, body: body === undefined ? undefined : JSON.stringify(body), signal: controller.signal, cache: "no-store", credentials: "omit" });
    } catch (err) {
      throw new ApiError(0, "UNREACHABLE", "The admin API does not answer (is the controller running?)");
    } finally {
      clearTimeout(timer);
    }
    var data = null;
    try { data = await res.json(); } catch (err) { data = null; }
    var error = data && data.error ? data.error : null;
    if (res.status === 401) throw new ApiError(401, "UNAUTHORIZED", error ? error.message : "unauthorized");
    if (!res.ok) throw new ApiError(res.status, error ? error.code : "HTTP_" + res.status, error ? error.message : res.statusText);
    return data;
  }

  function askForToken(message) {
    state.needToken = true;
    $("login-error").textContent = message || "";
    $("login").classList.add("show");
    $("app").classList.add("hidden");
    $("token").focus();
  }

  $("login-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var value = $("token").value.trim();
    if (!value) { $("login-error").textContent = "Enter the admin token."; return; }
    state.token = value;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token").value = "";
    state.needToken = false;
    $("login-error").textContent = "Checking the token...";
    tick();
  });

  $("sign-out").addEventListener("click", function () {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = "";
    askForToken("Signed out.");
  });

  function onUnauthorized() {
    var hadToken = !!state.token;
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = "";
    askForToken(hadToken ? "The admin API refused that token (401). Enter the FLOTILLA_ADMIN_TOKEN of the controller." : "This controller needs its admin token (FLOTILLA_ADMIN_TOKEN).");
  }

  // Requests per second as the status reports them: counted by every router and handle, one per request even when requests share a batch job.
  function recordRates(status, at) {
    status.deployments.forEach(function (d) {
      if (typeof d.requestsPerS !== "number") return;
      var series = state.rates[d.name] || (state.rates[d.name] = []);
      series.push({ t: at, v: d.requestsPerS });
      while (series.length && series[0].t < at - CHART_MS) series.shift();
    });
  }

  function recordDecisions(status) {
    status.deployments.forEach(function (d) {
      var last = d.autoscaling && d.autoscaling.lastDecision;
      if (!last) return;
      var list = state.decisions[d.name] || (state.decisions[d.name] = []);
      if (!list.length || list[list.length - 1].at !== last.at) list.push(last);
      while (list.length > 5) list.shift();
    });
  }

  async function refreshDetail() {
    var name = state.selected;
    if (!name) return;
    try {
      var history = await api("GET", "/api/deployments/" + encodeURIComponent(name) + "/history");
      if (state.selected === name) { state.history = history; state.historyError = null; }
    } catch (err) {
      if (err.status === 401) throw err;
      if (state.selected === name) { state.history = null; state.historyError = err; }
    }
    var logs = state.logs[name];
    if (!logs || logs.available) {
      try {
        var answer = await api("GET", "/api/deployments/" + encodeURIComponent(name) + "/logs?limit=200");
        state.logs[name] = { available: true, lines: logLines(answer) };
      } catch (err) {
        if (err.status === 401) throw err;
        state.logs[name] = { available: false, lines: [], error: err.status === 404 ? null : err.message };
      }
    }
  }

  function logLines(answer) {
    var list = answer && (answer.lines || answer.logs || answer.entries);
    if (!Array.isArray(list)) return [JSON.stringify(answer, null, 2)];
    return list.map(function (entry) {
      if (typeof entry === "string") return entry;
      if (!entry || typeof entry.line !== "string") return JSON.stringify(entry);
      var at = typeof entry.at === "number" ? new Date(entry.at).toISOString().slice(11, 19) + " " : "";
      return at + (entry.host || "?") + " " + (entry.replica || "?") + " " + entry.line;
    });
  }

  var running = false;
  async function tick() {
    if (running) return;
    running = true;
    var started = Date.now();
    try {
      if (!state.needToken) {
        state.status = await api("GET", "/api/status");
        state.apiError = null;
        state.updatedAt = Date.now();
        recordRates(state.status, state.updatedAt);
        recordDecisions(state.status);
        await refreshDetail();
        $("login").classList.remove("show");
        $("app").classList.remove("hidden");
      }
    } catch (err) {
      if (err.status === 401) onUnauthorized();
      else state.apiError = err;
    } finally {
      running = false;
    }
    render();
    setTimeout(tick, Math.max(0, POLL_MS - (Date.now() - started)));
  }

  function time(ms) { return new Date(ms).toLocaleTimeString(); }

  function renderBanner() {
    var banner = $("banner");
    var err = state.apiError;
    if (!err) { banner.classList.remove("show"); banner.textContent = ""; return; }
    var text;
    if (err.code === "REDIS_UNAVAILABLE") text = "Redis does not answer: the cluster state cannot be read. Routers and replicas keep serving what they can; this page retries every second.";
    else if (err.code === "UNREACHABLE") text = err.message;
    else text = "The admin API answered " + err.status + " " + err.code + ": " + err.message;
    if (state.updatedAt) text += " Last update " + time(state.updatedAt) + ".";
    banner.textContent = text;
    banner.classList.add("show");
  }

  function replicaCounts(d) {
    var counts = {};
    d.replicas.forEach(function (r) { counts[r.state] = (counts[r.state] || 0) + 1; });
    var order = ["running", "reconfiguring", "starting", "pending", "draining", "failed", "stopped"];
    var parts = order.filter(function (s) { return counts[s]; }).map(function (s) { return s + " " + counts[s]; });
    return parts.length ? parts.join(" \u00b7 ") : "none";
  }

  function rollout(d) {
    var current = d.replicas.filter(function (r) { return r.codeVersion === d.codeVersion && (r.state === "running" || r.state === "reconfiguring"); }).length;
    var target = d.targetReplicas;
    var pct = target > 0 ? Math.min(100, Math.round((current / target) * 100)) : (d.status === "HEALTHY" ? 100 : 0);
    return { current: current, target: target, pct: pct, text: current + "/" + target + " on version " + d.version };
  }

  function chart(name) {
    var series = state.rates[name] || [];
    var svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("class", "chart");
    svg.setAttribute("viewBox", "0 0 300 48");
    svg.setAttribute("preserveAspectRatio", "none");
    var max = 1;
    series.forEach(function (p) { if (p.v > max) max = p.v; });
    var now = series.length ? series[series.length - 1].t : Date.now();
    var points = series.map(function (p) {
      var x = 300 - ((now - p.t) / CHART_MS) * 300;
      var y = 46 - (p.v / max) * 44;
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    var line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", points.join(" "));
    svg.appendChild(line);
    return { svg: svg, max: max, last: series.length ? series[series.length - 1].v : null };
  }

  function card(name) {
    var existing = state.cards[name];
    if (existing) return existing;
    var parts = {
      root: el("article", { className: "card", "data-testid": "deployment-" + name }),
      badge: el("span", { className: "badge", "data-testid": "status" }),
      message: el("div", { className: "msg" }),
      bar: el("div", { className: "bar" }, el("span")),
      progress: el("span", { className: "progress-text", "data-testid": "progress" }),
      facts: el("dl", { className: "facts" }),
      chart: el("div"),
      autoscaling: el("div"),
      button: el("button", { className: "secondary", type: "button", "data-testid": "select-" + name, text: "History, rollback and logs" })
    };
    parts.button.addEventListener("click", function () { select(name); });
    parts.root.append(
      el("header", null, el("h3", { text: name }), parts.badge),
      parts.message,
      el("div", { className: "progress" }, parts.bar, parts.progress),
      parts.facts,
      parts.chart,
      parts.autoscaling,
      el("div", { className: "actions" }, parts.button)
    );
    state.cards[name] = parts;
    return parts;
  }

  function fact(dl, label, value) {
    dl.append(el("dt", { text: label }), el("dd", { text: value }));
  }

  function renderDeployments(status) {
    var container = $("deployments");
    var names = status.deployments.map(function (d) { return d.name; });
    for (var name in state.cards) {
      if (names.indexOf(name) === -1) { state.cards[name].root.remove(); delete state.cards[name]; }
    }
    $("no-deployments").hidden = names.length > 0;
    status.deployments.forEach(function (d, i) {
      var c = card(d.name);
      if (container.children[i] !== c.root) container.insertBefore(c.root, container.children[i] || null);
      c.root.classList.toggle("selected", state.selected === d.name);
      c.badge.textContent = d.status;
      c.badge.className = "badge " + d.status;
      c.message.textContent = d.message;
      var r = rollout(d);
      c.bar.className = "bar " + d.status;
      c.bar.firstChild.style.width = r.pct + "%";
      c.progress.textContent = r.text;
      var facts = el("dl", { className: "facts" });
      fact(facts, "version", d.version);
      fact(facts, "replicas", replicaCounts(d));
      var versions = Object.keys(d.versions).map(function (v) { return v + ": " + d.versions[v]; }).join(", ");
      fact(facts, "by version", versions || "none");
      fact(facts, "queue", d.queue.waiting + " waiting, " + d.queue.active + " active");
      fact(facts, "route", d.routePrefix === null ? "none" : d.routePrefix);
      c.facts.replaceWith(facts);
      c.facts = facts;
      var ch = chart(d.name);
      var label = el("div", { className: "chart-label" },
        el("span", { "data-testid": "rate", text: "requests/s " + (ch.last === null ? "-" : ch.last.toFixed(1)) }),
        el("span", { text: "last 5 min, max " + ch.max.toFixed(1) }));
      c.chart.replaceChildren(ch.svg, label);
      if (d.autoscaling) {
        var a = d.autoscaling;
        var list = el("ul", { className: "decisions" });
        (state.decisions[d.name] || []).slice().reverse().forEach(function (dec) {
          list.append(el("li", { text: time(dec.at) + ": " + dec.from + " \u2192 " + dec.to + " (" + dec.reason + ")" }));
        });
        c.autoscaling.replaceChildren(
          el("div", { className: "msg", text: "autoscaler: demand " + a.demand.toFixed(1) + ", desired " + a.desired + ", actual " + a.actual }),
          list.children.length ? list : el("div", { className: "msg", text: "no scaling decision yet" })
        );
      } else {
        c.autoscaling.replaceChildren();
      }
    });
  }

  function resources(set) {
    var keys = Object.keys(set || {});
    return keys.length ? keys.map(function (k) { return k + " " + (Math.round(set[k] * 100) / 100); }).join(", ") : "none";
  }

  function renderSection(id, signature, build) {
    if (state.sigs[id] === signature) return;
    state.sigs[id] = signature;
    $(id).replaceChildren(build());
  }

  function renderHosts(status) {
    renderSection("hosts", JSON.stringify(status.hosts), function () {
      if (!status.hosts.length) return el("p", { className: "empty", text: "No hosts registered." });
      var body = el("tbody");
      status.hosts.forEach(function (h) {
        body.append(el("tr", null,
          el("td", { text: h.id + (h.draining ? " (draining)" : "") }),
          el("td", { className: h.alive ? "" : "dead", text: h.alive ? "yes" : "no" }),
          el("td", { text: resources(h.resources.total) }),
          el("td", { text: resources(h.resources.free) }),
          el("td", { text: h.replicas.length ? h.replicas.join(", ") : "none" })));
      });
      return el("div", { className: "table-wrap" }, el("table", null,
        el("thead", null, el("tr", null, el("th", { text: "host" }), el("th", { text: "alive" }), el("th", { text: "total" }), el("th", { text: "free" }), el("th", { text: "replicas" }))),
        body));
    });
  }

  function renderProcesses(status) {
    renderSection("processes", JSON.stringify([status.controllers, status.routers, status.pendingDemand]), function () {
      var controllers = el("ul", { className: "plain" });
      status.controllers.forEach(function (c) {
        controllers.append(el("li", { className: c.alive ? "" : "dead", text: "controller " + c.id + (c.leader ? " (leader)" : "") + (c.alive ? "" : " (dead)") }));
      });
      if (!status.controllers.some(function (c) { return c.leader; })) controllers.append(el("li", { className: "dead", text: "no leader: deploys are not being applied" }));
      status.routers.forEach(function (r) {
        controllers.append(el("li", { className: r.alive ? "" : "dead", text: "router " + r.id + " on port " + r.port + (r.alive ? "" : " (dead)") }));
      });
      var pending = resources(status.pendingDemand);
      if (pending !== "none") controllers.append(el("li", { text: "pending demand: " + pending + " (start hosts with this much free)" }));
      return controllers;
    });
  }

  function select(name) {
    state.selected = state.selected === name ? null : name;
    state.history = null;
    state.historySig = "";
    state.confirm = null;
    notice("");
    render();
    if (state.selected) refreshDetail().then(render, function (err) { if (err.status === 401) onUnauthorized(); });
  }

  function notice(text, isError) {
    var n = $("notice");
    n.textContent = text;
    n.classList.toggle("show", !!text);
    n.classList.toggle("error", !!isError);
  }

  async function rollback(to) {
    var name = state.selected;
    state.busy = true;
    renderDetail(true);
    try {
      var result = await api("POST", "/api/deployments/" + encodeURIComponent(name) + "/rollback", to === null ? {} : { to: to });
      notice(name + ": rolling back from revision " + result.from + " to revision " + result.rollbackOf + " as revision " + result.revision + ".");
    } catch (err) {
      if (err.status === 401) { onUnauthorized(); return; }
      notice("Rollback refused: " + err.message, true);
    } finally {
      state.busy = false;
      state.confirm = null;
    }
    await refreshDetail().catch(function () {});
    render();
  }

  // JSON with sorted keys: a spec applied again by a rollback may list its fields in another order.
  function canonical(value) {
    if (value === null || typeof value !== "object") return JSON.stringify(value);
    if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
    return "{" + Object.keys(value).sort().map(function (k) { return JSON.stringify(k) + ":" + canonical(value[k]); }).join(",") + "}";
  }

  function outcomeText(r) {
    return r.outcome === "failed" && r.error ? "failed: " + r.error : r.outcome;
  }

  function renderDetail(force) {
    var detail = $("detail");
    var name = state.selected;
    detail.classList.toggle("show", !!name);
    if (!name) { state.historySig = ""; return; }
    var signature = JSON.stringify([name, state.history, state.historyError && state.historyError.message, state.confirm, state.busy, state.logs[name]]);
    if (!force && signature === state.historySig) return;
    state.historySig = signature;
    $("detail-title").textContent = name + ": revisions and logs";
    var box = $("history");
    var h = state.history;
    if (!h) {
      box.replaceChildren(el("p", { className: "empty", text: state.historyError ? state.historyError.message : "Loading..." }));
    } else if (!h.revisions.length) {
      box.replaceChildren(el("p", { className: "empty", text: "No revisions recorded (deployed before revisions were kept)." }));
    } else {
      var body = el("tbody");
      var currentSpec = canonical((h.revisions.filter(function (r) { return r.revision === h.current; })[0] || {}).spec);
      h.revisions.slice().reverse().forEach(function (r) {
        var isCurrent = r.revision === h.current;
        var sameSpec = !isCurrent && canonical(r.spec) === currentSpec;
        var action = isCurrent ? el("span", { className: "empty", text: "current" }) : sameSpec ? el("span", { className: "empty", text: "same as current" }) : el("button", {
          type: "button", className: "secondary", "data-testid": "rollback-" + r.revision, disabled: state.busy,
          text: "Roll back to " + r.revision,
          onclick: function () { state.confirm = r.revision; renderDetail(); }
        });
        body.append(el("tr", { className: isCurrent ? "current" : "", "data-testid": "revision-" + r.revision },
          el("td", { text: String(r.revision) }),
          el("td", { text: new Date(r.appliedAt).toLocaleString() }),
          el("td", { text: r.source.user + "@" + r.source.host }),
          el("td", { text: r.version }),
          el("td", { className: "outcome-" + r.outcome.replace(/ /g, "-"), "data-testid": "outcome", text: outcomeText(r) }),
          el("td", { text: r.rollbackOf !== undefined ? "rollback of " + r.rollbackOf : "" }),
          el("td", null, action)));
      });
      var confirm = null;
      if (state.confirm !== null) {
        var target = h.revisions.filter(function (r) { return r.revision === state.confirm; })[0];
        confirm = el("div", { className: "confirm", "data-testid": "confirm" },
          el("span", { text: "Roll " + name + " back to revision " + state.confirm + (target ? " (version " + target.version + ")" : "") + "? This is a rolling update." }),
          el("button", { type: "button", "data-testid": "rollback-confirm", disabled: state.busy, text: "Roll back", onclick: function () { rollback(state.confirm); } }),
          el("button", { type: "button", className: "secondary", text: "Cancel", onclick: function () { state.confirm = null; renderDetail(); } }));
      }
      box.replaceChildren(
        confirm || el("span"),
        el("div", { className: "table-wrap" }, el("table", null,
          el("thead", null, el("tr", null, el("th", { text: "rev" }), el("th", { text: "applied" }), el("th", { text: "from" }), el("th", { text: "version" }), el("th", { text: "outcome" }), el("th", { text: "source" }), el("th"))),
          body)));
    }
    var logs = state.logs[name];
    var logBox = $("logs");
    if (!logs) logBox.replaceChildren(el("p", { className: "empty", text: "Loading..." }));
    else if (!logs.available) logBox.replaceChildren(el("p", { className: "empty", "data-testid": "logs-empty", text: logs.error ? "Logs cannot be read: " + logs.error : "Logs are not collected yet." }));
    else logBox.replaceChildren(el("pre", { className: "logs", text: logs.lines.join("\n") || "(no lines)" }));
  }

  function render() {
    renderBanner();
    var status = state.status;
    if (!status) return;
    $("app").classList.toggle("stale", !!state.apiError);
    $("namespace").textContent = "namespace " + status.namespace;
    $("updated").textContent = "updated " + time(state.updatedAt);
    renderDeployments(status);
    renderHosts(status);
    renderProcesses(status);
    renderDetail(false);
  }

  $("close-detail").addEventListener("click", function () { if (state.selected) select(state.selected); });
  tick();
})();
`;
