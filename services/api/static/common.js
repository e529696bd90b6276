// callkpi pages: what the wallboard, the reports and the calls pages share —
// the read token, formatting, and building elements. No build step, no
// dependencies; loaded before each page's own script.
//
// The token is kept in the browser's storage and sent as an Authorization
// header, never in a URL (proxies and logs keep URLs).
"use strict";

const TOKEN_KEY = "callkpi.readToken";

// --- formatting ---------------------------------------------------------------
const pct = (v) => (v === null || v === undefined ? "—" : `${(v * 100).toFixed(1)}%`);
const secs = (v) => (v === null || v === undefined ? "—" : `${Math.round(v)} s`);
const num = (v) => (v === null || v === undefined ? "—" : String(v));
const dec1 = (v) => (v === null || v === undefined ? "—" : v.toFixed(1));
function mmss(v) {
  if (v === null || v === undefined) return "—";
  const s = Math.max(0, Math.round(v));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}
function clock(d) {
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}
// "2026-12-01T10:30:00+08:00" -> "10:30": the center's wall clock, as the API
// writes it, whatever zone the browser is in
const hhmm = (isoText) => isoText.slice(11, 16);
const ymd = (isoText) => isoText.slice(0, 10);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

// --- the token ----------------------------------------------------------------
function authHeaders(extra = {}) {
  const token = localStorage.getItem(TOKEN_KEY);
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

function askToken(why) {
  const dialog = document.getElementById("login");
  document.getElementById("login-why").textContent = why
    ? `The token was refused: ${why}. Enter a token with the read scope.`
    : "This page needs a token with the read scope.";
  if (!dialog.open) dialog.showModal();
}

// The token dialog and the "forget token" button, the same on every page.
function loginDialog() {
  const input = el("input", { id: "login-token", type: "password", autocomplete: "off",
    required: "", placeholder: "token from callkpi tokens new" });
  const form = el("form", { method: "dialog", id: "login-form" }, el("h2", {}, "Read token"),
    el("p", { id: "login-why" }, "This page needs a token with the read scope."),
    input, el("button", { type: "submit" }, "Connect"));
  document.body.append(el("dialog", { id: "login" }, form));
  const footer = document.querySelector("footer") || document.body.appendChild(el("footer"));
  footer.prepend(el("button", { id: "forget", type: "button" }, "forget token"));
}

// A refused token opens the dialog; `onToken` runs once one is entered.
function setUpLogin(onToken) {
  loginDialog();
  document.getElementById("login-form").addEventListener("submit", () => {
    localStorage.setItem(TOKEN_KEY, document.getElementById("login-token").value.trim());
    document.getElementById("login-token").value = "";
    onToken();
  });
  document.getElementById("forget").addEventListener("click", () => {
    localStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
}

class AuthError extends Error {}

// GET with the token; a 401/403 asks for one and throws AuthError, any other
// refusal throws with the API's own `detail` (it names the parameter).
async function apiGet(url, accept = "application/json") {
  const resp = await fetch(url, { headers: authHeaders({ Accept: accept }), cache: "no-store" });
  if (resp.status === 401 || resp.status === 403) {
    const body = await resp.json().catch(() => ({}));
    askToken(resp.status === 401 && !localStorage.getItem(TOKEN_KEY) ? null : body.detail || `HTTP ${resp.status}`);
    throw new AuthError("token");
  }
  if (!resp.ok) {
    const body = await resp.json().catch(() => ({}));
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || body);
    throw new Error(detail || `HTTP ${resp.status}`);
  }
  return resp;
}

// A download the page fetches itself (a link could not carry the token): the
// file's name is the one the API gives.
async function download(url) {
  const resp = await apiGet(url, "*/*");
  const blob = await resp.blob();
  const m = /filename="([^"]+)"/.exec(resp.headers.get("Content-Disposition") || "");
  const a = el("a", { href: URL.createObjectURL(blob), download: m ? m[1] : "callkpi-download" });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}
