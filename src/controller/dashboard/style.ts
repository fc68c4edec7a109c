/** The dashboard's stylesheet: one column on a phone, a grid of cards on wider screens. */
export const DASHBOARD_STYLE = String.raw`
:root {
  --bg: #f5f6f8; --fg: #1d2330; --muted: #5f6b7c; --card: #fff; --line: #dde1e7;
  --ok: #1f7a3d; --warn: #a35c00; --bad: #b3261e; --info: #1f5fa8; --accent: #2a6fdb;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 15px;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); }
header.top { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: baseline; padding: .75rem 1rem; background: #1d2330; color: #fff; }
header.top h1 { font-size: 1.2rem; margin: 0; }
header.top .meta { color: #c5ccd8; font-size: .85rem; }
header.top button { margin-left: auto; color: #fff; border-color: #c5ccd8; }
main { padding: 1rem; max-width: 1400px; margin: 0 auto; }
h2 { font-size: 1.05rem; margin: 1.25rem 0 .5rem; }
button { font: inherit; padding: .35rem .7rem; border: 1px solid var(--accent); background: var(--accent); color: #fff; border-radius: 4px; cursor: pointer; }
button.secondary { background: transparent; color: var(--accent); }
button:disabled { opacity: .5; cursor: default; }
#banner { display: none; padding: .75rem 1rem; background: #fdecea; color: var(--bad); border-bottom: 1px solid #f3b8b3; font-weight: 600; }
#banner.show { display: block; }
#notice { display: none; margin: .5rem 0; padding: .5rem .75rem; border-radius: 4px; background: #e8f0fc; color: var(--info); }
#notice.show { display: block; }
#notice.error { background: #fdecea; color: var(--bad); }
#login { display: none; max-width: 26rem; margin: 3rem auto; background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 1.25rem; }
#login.show { display: block; }
#login label { display: block; font-weight: 600; margin-bottom: .5rem; }
#login input { width: 100%; font: inherit; padding: .45rem; border: 1px solid var(--line); border-radius: 4px; margin-bottom: .75rem; }
#login .error { color: var(--bad); min-height: 1.2em; margin: 0 0 .5rem; }
#app.hidden { display: none; }
.stale { opacity: .55; }
.grid { display: grid; gap: .75rem; grid-template-columns: repeat(auto-fill, minmax(min(100%, 320px), 1fr)); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: .75rem; min-width: 0; }
.card.selected { border-color: var(--accent); box-shadow: 0 0 0 1px var(--accent); }
.card header { display: flex; justify-content: space-between; align-items: center; gap: .5rem; }
.card h3 { margin: 0; font-size: 1rem; overflow-wrap: anywhere; }
.badge { font-size: .75rem; font-weight: 700; padding: .1rem .45rem; border-radius: 999px; background: #e6e9ee; white-space: nowrap; }
.badge.HEALTHY { background: #dff3e5; color: var(--ok); }
.badge.UPDATING { background: #fff1db; color: var(--warn); }
.badge.UNHEALTHY { background: #fdecea; color: var(--bad); }
.badge.DELETING { background: #e6e9ee; color: var(--muted); }
.msg { color: var(--muted); font-size: .85rem; margin: .35rem 0; overflow-wrap: anywhere; }
.progress { display: flex; align-items: center; gap: .5rem; font-size: .85rem; }
.bar { flex: 1; height: .5rem; background: #e6e9ee; border-radius: 999px; overflow: hidden; }
.bar span { display: block; height: 100%; background: var(--ok); transition: width .3s; }
.bar.UPDATING span { background: var(--warn); }
.bar.UNHEALTHY span { background: var(--bad); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem .75rem; margin: .5rem 0; font-size: .85rem; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.chart { width: 100%; height: 48px; display: block; background: #fafbfc; border: 1px solid var(--line); border-radius: 4px; }
.chart polyline { fill: none; stroke: var(--accent); stroke-width: 1.5; vector-effect: non-scaling-stroke; }
.chart-label { font-size: .75rem; color: var(--muted); display: flex; justify-content: space-between; }
.decisions { font-size: .8rem; color: var(--muted); margin: .35rem 0 0; padding-left: 1.1rem; }
.card .actions { margin-top: .6rem; }
.table-wrap { overflow-x: auto; background: var(--card); border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-size: .85rem; }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; white-space: nowrap; }
tr.current td { font-weight: 600; }
.outcome-failed { color: var(--bad); }
.outcome-rolled-out { color: var(--ok); }
.outcome-rolling-out { color: var(--warn); }
.outcome-rolled-back, .outcome-superseded { color: var(--muted); }
#detail { display: none; }
#detail.show { display: block; }
.confirm { margin: .5rem 0; padding: .6rem .75rem; background: #fff8e6; border: 1px solid #f0d9a8; border-radius: 4px; display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
pre.logs { background: #11151c; color: #d8dee9; padding: .75rem; border-radius: 6px; overflow: auto; max-height: 20rem; font-size: .8rem; margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.empty { color: var(--muted); font-style: italic; }
ul.plain { list-style: none; padding: 0; margin: 0; }
ul.plain li { padding: .2rem 0; }
.dead { color: var(--bad); }
@media (max-width: 600px) {
  :root { font-size: 14px; }
  main { padding: .6rem; }
  th, td { padding: .35rem .4rem; }
}
`;
