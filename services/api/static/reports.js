// callkpi reports: one entity's intervals over a day or a range, from
// GET /v1/reports/{kind}/{id}: four charts (uPlot, vendored), the table of
// every column, and the same rows as CSV or XLSX. Each table cell and chart
// interval links to its calls (/reports/calls). No build step.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const FINE = new Set(["15m", "30m", "1h"]);
let report = null;     // the last report shown
let centerToday = null; // the center's date today, from the API (not the browser's)

// The calls behind a cell: which outcome, waited how long ("abandoned after
// 30 s at 10:00-10:30"); columns not listed link to every call of the interval.
const DRILL = {
  answered: { outcome: "answered" },
  abandoned: { outcome: "abandoned" },
  timed_out: { outcome: "timed_out" },
  asa_seconds: { outcome: "answered" },
  aht_seconds: { outcome: "answered" },
  service_level: "missed", // waited past the service-level threshold
};
const DRILLABLE = new Set(["from", "offered", "presented", "answered", "abandoned", "timed_out",
  "answer_rate", "service_level", "asa_seconds", "aht_seconds"]);

function dayPlus(day, n) {
  const d = new Date(`${day}T12:00:00Z`); // noon UTC: no zone moves it off the day
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

function setProblem(text) {
  $("problem").hidden = !text;
  $("problem").textContent = text || "";
}

function formatted(unit, v, granularity) {
  if (v === null || v === undefined) return "—";
  if (unit === "time") return FINE.has(granularity) ? hhmm(v) : ymd(v);
  if (unit === "rate") return pct(v);
  if (unit === "seconds") return secs(v);
  if (unit === "agents") return dec1(v);
  if (unit === "text") return String(v).replace("_", "-");
  return num(v);
}

// --- choosing -----------------------------------------------------------------
async function loadEntities() {
  const kind = $("kind").value;
  const body = await (await apiGet(`/v1/kpis/${kind}?window=today`)).json();
  centerToday = ymd(body.from);
  const select = $("entity");
  const want = params.get("id");
  select.replaceChildren(...body.items.map((it) => {
    const label = it.name && it.name !== it.id ? `${it.name} (${it.id})` : it.id;
    return el("option", { value: it.id }, kind === "center" ? "Whole center" : label);
  }));
  if (want && body.items.some((it) => it.id === want)) select.value = want;
  if (!$("day-from").value) $("day-from").value = params.get("from") || centerToday;
  if (!$("day-to").value) $("day-to").value = params.get("to") || $("day-from").value;
}

function chosen() {
  return {
    kind: $("kind").value,
    id: $("entity").value,
    from: $("day-from").value,
    to: $("day-to").value,
    granularity: $("granularity").value,
  };
}

function reportUrl(c, format) {
  const q = new URLSearchParams({ from: c.from, to: dayPlus(c.to, 1), granularity: c.granularity });
  if (format) q.set("format", format);
  return `/v1/reports/${c.kind}/${encodeURIComponent(c.id)}?${q}`;
}

async function show() {
  const c = chosen();
  if (!c.id) return;
  history.replaceState(null, "", `/reports?${new URLSearchParams(c)}`);
  setProblem(null);
  try {
    report = await (await apiGet(reportUrl(c))).json();
  } catch (err) {
    if (!(err instanceof AuthError)) setProblem(`report: ${err.message}`);
    return;
  }
  report.chosen = c;
  $("csv").disabled = $("xlsx").disabled = false;
  const days = c.from === c.to ? c.from : `${c.from} – ${c.to}`;
  $("heading").textContent = `${report.name} · ${days} · ${$("granularity").selectedOptions[0].textContent}`;
  const notes = [`Times in ${report.time_zone}.`];
  if (!report.staffing) notes.push("Staffing is per interval of an hour or less.");
  if (!report.compared) notes.push("Months have no week-before comparison.");
  notes.push("Click a cell or a chart interval for its calls.");
  $("note").textContent = notes.join(" ");
  drawCharts();
  drawTable();
}

// --- the calls behind a figure -----------------------------------------------
function callsUrl(row, column) {
  const r = report;
  const q = new URLSearchParams({ from: row.from, to: row.to });
  if (r.kind !== "center") q.set(r.kind, r.id);
  const how = DRILL[column];
  if (how === "missed") q.set("min_wait", String(r.sl_seconds));
  else if (how) for (const [k, v] of Object.entries(how)) q.set(k, v);
  return `/reports/calls?${q}`;
}

// --- the table ----------------------------------------------------------------
function drawTable() {
  const r = report;
  const cols = r.columns;
  $("table").querySelector("thead").replaceChildren(
    el("tr", {}, ...cols.map((c) => el("th", { scope: "col" }, c.label))));
  $("table").querySelector("tbody").replaceChildren(...r.rows.map((row) => {
    const tr = el("tr", {});
    tr.dataset.from = row.from;
    if (row.answer_rate_status === "below" || row.service_level_status === "below") tr.classList.add("below");
    for (const c of cols) {
      const text = formatted(c.unit, row[c.name], r.granularity);
      const td = el("td", { class: `u-${c.unit}` });
      td.dataset.col = c.name;
      const st = row[`${c.name}_status`];
      if (st) td.classList.add(st);
      if (DRILLABLE.has(c.name) && row[c.name] !== null && (c.name === "from" || row[c.name] !== 0)) {
        td.append(el("a", { href: callsUrl(row, c.name), title: "the calls behind this figure" }, text));
      } else {
        td.textContent = text;
      }
      tr.append(td);
    }
    return tr;
  }));
}

// --- the charts ---------------------------------------------------------------
const charts = [];
const COLOURS = { offered: "#4a7bd0", answered: "#2e9d5b", abandoned: "#d64541", line: "#d64541",
  sl: "#8e44ad", slLine: "#b07cc6", before: "#9aa3ad", required: "#d35400", scheduled: "#2c3e50",
  staffed: "#27ae60", asa: "#2980b9", aht: "#8e6c3a" };

function width(u) {
  const fig = u ? u.root.parentElement : null;
  return Math.max(300, (fig ? fig.clientWidth : 600) - 4);
}

// Lines without markers; a figure's own series (a rate, a time) keeps uPlot's
// markers, which show where intervals are few or lone between empty ones.
function series(label, stroke, opts = {}) {
  return { label, stroke, width: 2, spanGaps: false, points: { show: false }, ...opts };
}
const marked = (label, stroke, opts = {}) => series(label, stroke, { points: { size: 6 }, ...opts });

// Axis ticks on the center's wall clock, 24-hour, whatever the browser's zone
function ticks(u, splits) {
  const r = report;
  const fine = FINE.has(r.granularity);
  const f = new Intl.DateTimeFormat("en-CA", fine
    ? { timeZone: r.time_zone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }
    : { timeZone: r.time_zone, year: "numeric", month: "2-digit", day: "2-digit" });
  return splits.map((ts) => f.format(new Date(ts * 1000)));
}

function plot(target, seriesList, data, axes) {
  const r = report;
  const fig = $(target);
  fig.querySelectorAll(".uplot").forEach((n) => n.remove());
  const stepped = uPlot.paths.stepped({ align: 1 });
  const u = new uPlot({
    width: Math.max(300, fig.clientWidth - 4),
    height: 220,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), r.time_zone),
    series: [{ label: "from", value: (self, v) => (v === null ? "—" : rowAt(v)) },
      ...seriesList.map((s) => (s.step ? { ...s, paths: stepped } : s))],
    axes: [{ values: ticks }, ...axes],
    scales: { x: { time: true } },
    cursor: { drag: { x: false, y: false } },
    legend: { live: true },
  }, data, fig);
  u.over.style.cursor = "pointer";
  u.over.addEventListener("click", () => {
    const i = u.cursor.idx;
    if (i !== null && i !== undefined) location.href = callsUrl(r.rows[i], seriesList.drill || "offered");
  });
  charts.push(u);
  return u;
}

function rowAt(ts) {
  const row = report.rows.find((x) => Date.parse(x.from) / 1000 === ts);
  return row ? `${formatted("time", row.from, report.granularity)}` : "";
}

function drawCharts() {
  const r = report;
  charts.splice(0).forEach((u) => u.destroy());
  const x = r.rows.map((row) => Date.parse(row.from) / 1000);
  const col = (name, scale = 1) => r.rows.map((row) => (row[name] === null || row[name] === undefined ? null : row[name] * scale));
  const has = (name) => r.columns.some((c) => c.name === name);
  const bars = uPlot.paths.bars({ size: [0.6, 60], align: 1 });
  const percent = { values: (u, vals) => vals.map((v) => `${v}%`) };
  const calls = has("offered")
    ? [series("Offered", COLOURS.offered, { fill: "rgba(74,123,208,.25)", paths: bars }),
      series("Answered", COLOURS.answered), series("Abandoned", COLOURS.abandoned),
      series("Offered, week before", COLOURS.before, { dash: [6, 4] })]
    : [series("Presented", COLOURS.offered, { fill: "rgba(74,123,208,.25)", paths: bars }),
      series("Answered", COLOURS.answered), series("Answered, week before", COLOURS.before, { dash: [6, 4] })];
  calls.drill = "offered";
  plot("chart-calls", calls, has("offered")
    ? [x, col("offered"), col("answered"), col("abandoned"), col("last_week_offered")]
    : [x, col("presented"), col("answered"), col("last_week_answered")], [{ label: "calls" }]);
  const rates = [marked("Answer rate", COLOURS.answered),
    series("Answer-rate line", COLOURS.line, { dash: [8, 4], step: true, width: 1.5 }),
    series("Answer rate, week before", COLOURS.before, { dash: [2, 3] })];
  const rateData = [x, col("answer_rate", 100), col("answer_rate_line", 100), col("last_week_answer_rate", 100)];
  if (has("service_level")) {
    rates.push(marked("Service level", COLOURS.sl),
      series("Service-level line", COLOURS.slLine, { dash: [8, 4], step: true, width: 1.5 }));
    rateData.push(col("service_level", 100), col("service_level_line", 100));
  }
  rates.drill = "answer_rate";
  plot("chart-rates", rates, rateData, [{ ...percent, label: "%" }]);
  const times = [marked("AHT", COLOURS.aht), series("AHT, week before", COLOURS.before, { dash: [2, 3] })];
  const timeData = [x, col("aht_seconds"), col("last_week_aht_seconds")];
  if (has("asa_seconds")) {
    times.unshift(marked("ASA", COLOURS.asa));
    timeData.splice(1, 0, col("asa_seconds"));
  }
  times.drill = "aht_seconds";
  plot("chart-times", times, timeData, [{ label: "seconds" }]);
  const staffingFig = $("chart-staffing");
  staffingFig.hidden = !r.staffing;
  if (r.staffing) {
    const staff = [];
    const staffData = [x];
    if (has("required_agents")) { staff.push(series("Required", COLOURS.required, { step: true })); staffData.push(col("required_agents")); }
    if (has("scheduled_agents")) {
      staff.push(series("Scheduled", COLOURS.scheduled, { step: true }), series("Staffed", COLOURS.staffed, { step: true }));
      staffData.push(col("scheduled_agents"), col("staffed_agents"));
    }
    staff.drill = "offered";
    plot("chart-staffing", staff, staffData, [{ label: "agents" }]);
  }
}

// --- wiring -------------------------------------------------------------------
async function start() {
  try {
    await loadEntities();
  } catch (err) {
    if (!(err instanceof AuthError)) setProblem(`entities: ${err.message}`);
    return;
  }
  await show();
}

if (params.get("kind")) $("kind").value = params.get("kind");
if (params.get("granularity")) $("granularity").value = params.get("granularity");
$("kind").addEventListener("change", async () => {
  params.delete("id");
  await loadEntities().catch((err) => setProblem(`entities: ${err.message}`));
  await show();
});
$("pick").addEventListener("submit", (ev) => { ev.preventDefault(); show(); });
$("today").addEventListener("click", () => {
  $("day-from").value = $("day-to").value = centerToday;
  show();
});
$("yesterday").addEventListener("click", () => {
  $("day-from").value = $("day-to").value = dayPlus(centerToday, -1);
  show();
});
for (const format of ["csv", "xlsx"]) {
  $(format).addEventListener("click", () => {
    download(reportUrl(report.chosen, format)).catch((err) => {
      if (!(err instanceof AuthError)) setProblem(`download: ${err.message}`);
    });
  });
}
$("print").addEventListener("click", () => window.print());
window.addEventListener("resize", () => charts.forEach((u) => u.setSize({ width: width(u), height: 220 })));
// printed two charts a row on A4 landscape (about 130 mm each)
window.addEventListener("beforeprint", () => charts.forEach((u) => u.setSize({ width: 480, height: 180 })));
window.addEventListener("afterprint", () => charts.forEach((u) => u.setSize({ width: width(u), height: 220 })));
setUpLogin(start);
start();
