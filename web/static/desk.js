// The review desk's keyboard. Every decision goes through the JSON API with the page's CSRF token;
// text from the server is only ever put into the page with textContent (never as HTML).
(() => {
  "use strict";
  const desk = document.getElementById("desk");
  if (!desk) return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const id = Number(desk.dataset.draftId) || null;
  const version = Number(desk.dataset.version);
  const filters = desk.dataset.filters || "";
  const $ = (sel) => document.querySelector(sel);
  const seen = JSON.parse(sessionStorage.getItem("rg-seen") || "[]");
  if (id && seen[seen.length - 1] !== id) { seen.push(id); sessionStorage.setItem("rg-seen", JSON.stringify(seen.slice(-200))); }
  let editing = false;

  function say(text, kind) {
    const box = $("#message");
    box.textContent = text;
    box.className = "message " + (kind || "");
  }
  async function post(path, body) {
    const r = await fetch(path, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}, body: JSON.stringify(body || {})});
    let data = {};
    try { data = await r.json(); } catch (e) { /* empty body */ }
    return {ok: r.ok, status: r.status, data};
  }
  const go = (url) => { window.location.href = url; };
  const show = (draftId) => go("/desk?" + (filters ? filters + "&" : "") + "draft=" + draftId);
  const next = () => go(desk.dataset.nextUrl || "/desk?" + filters);

  async function decide(action, extra) {
    if (!id) return;
    say(action + "…");
    const r = await post(`/api/drafts/${id}/decision`, Object.assign({action, version}, extra || {}));
    if (r.ok) {
      const done = r.data.state === "decided" ? r.data.state : `${r.data.state} (${r.data.decided} of ${r.data.required})`;
      say(`${action}: draft ${id} ${done}`, "ok");
      if (action === "edit") show(id); else next();
    } else if (r.status === 409 && r.data.conflict) {
      conflict(r.data);
    } else {
      say(r.data.detail ? String(r.data.detail) : `error ${r.status}`, "error");
    }
  }
  function conflict(data) {
    const pick = (d) => ["action", "version", "status", "reviewer", "transformed_input", "reasoning", "response", "review_note"]
      .filter((k) => d[k] !== undefined && d[k] !== null).map((k) => `${k}: ${d[k]}`).join("\n\n");
    const yours = Object.assign({}, data.yours, data.yours.changes || {});
    delete yours.changes;
    $("#conflict-why").textContent = data.detail;
    $("#conflict-yours").textContent = pick(yours) || JSON.stringify(data.yours, null, 2);
    $("#conflict-current").textContent = pick(data.current);
    $("#conflict").classList.remove("hidden");
    say("conflict: nothing was overwritten", "error");
  }
  function startEdit() {
    if (!id || editing) return;
    editing = true;
    document.querySelectorAll("pre.editable").forEach((pre) => {
      const area = document.createElement("textarea");
      area.dataset.field = pre.dataset.field;
      area.value = pre.textContent;
      area.rows = Math.min(16, Math.max(3, pre.textContent.split("\n").length + 1));
      pre.replaceWith(area);
    });
    $("#edit-bar").classList.remove("hidden");
    document.querySelector("textarea[data-field]").focus();
  }
  function saveEdit() {
    const changes = {};
    document.querySelectorAll("textarea[data-field]").forEach((t) => { changes[t.dataset.field] = t.value; });
    decide("edit", {changes});
  }
  function openReject() {
    if (!id) return;
    $("#reject-box").classList.remove("hidden");
    $("#reject-note").focus();
  }
  function closePanels() {
    if (editing) { show(id); return; }
    ["#reject-box", "#help", "#conflict"].forEach((s) => { const el = $(s); if (el) el.classList.add("hidden"); });
  }
  async function undo() {
    const r = await post("/api/undo");
    if (r.ok) show(r.data.draft_id); else say(r.data.detail ? String(r.data.detail) : `error ${r.status}`, "error");
  }
  function previous() {
    const stack = seen.slice();
    if (stack[stack.length - 1] === id) stack.pop();
    const target = stack.pop();
    sessionStorage.setItem("rg-seen", JSON.stringify(stack));
    if (target) show(target); else say("no earlier draft in this session");
  }
  async function skip() {
    if (id) await post(`/api/drafts/${id}/release`);
    next();
  }
  const keys = {a: () => decide("approve"), r: openReject, e: startEdit, j: skip, k: previous, u: undo,
                "?": () => $("#help").classList.toggle("hidden")};

  document.addEventListener("keydown", (ev) => {
    const typing = ev.target.matches("input, textarea, select");
    if (ev.key === "Escape") { closePanels(); return; }
    if (editing && ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); saveEdit(); return; }
    if (typing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const act = keys[ev.key];
    if (act) { ev.preventDefault(); act(); }
  });
  document.querySelectorAll("[data-key]").forEach((b) => b.addEventListener("click", () => keys[b.dataset.key]()));
  const rejectBox = $("#reject-box");
  if (rejectBox) rejectBox.addEventListener("submit", (ev) => { ev.preventDefault(); decide("reject", {note: $("#reject-note").value}); });
  const save = $("#edit-save");
  if (save) save.addEventListener("click", saveEdit);
  const cancel = $("#edit-cancel");
  if (cancel) cancel.addEventListener("click", closePanels);
  $("#conflict-reload").addEventListener("click", () => show(id));
})();
