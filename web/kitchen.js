// The kitchen display: the board by station, live; each part started and readied by a tap; the
// equipment's status, reported from here.
import { Api, ApiError, el, signInForm, time } from "{{api.js}}";

const api = new Api("kitchen");
const main = document.querySelector("main");
const connection = document.getElementById("connection");
let stop = null;
let pending = null;
let me = null;
// Looks at the board overlap (a tap's reload, a message's, the periodic one): an answer to an
// older look that comes back after a newer one is dropped, so a stale board never wins.
let looked = 0;
let shown = 0;

function signedOut(message) {
  stop?.();
  stop = null;
  main.replaceChildren(signInForm(api, { title: "Kitchen sign-in (barista or above)", allowRegister: false, onDone: start }));
  if (message) main.prepend(el("p", { role: "alert", class: "error", text: message }));
}

async function act(path, body) {
  try {
    await api.request("POST", path, body);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return signedOut();
    alertText(e.message);
  }
  await load();
}

async function shift(method, body) {
  try {
    await api.request(method, `/api/v1/kitchen/shifts/${me.id}`, body);
  } catch (e) {
    alertText(e.message);
  }
  await load();
}

function alertText(text) {
  document.getElementById("kitchen-alert").textContent = text;
}

function ticket(station, t) {
  const path = `/api/v1/kitchen/orders/${t.order_id}/stations/${station.id}`;
  const label = `order ${t.order_id.slice(-6)}`;
  return el(
    "li",
    { class: `card ticket ${t.status}`, "data-order": t.order_id },
    el("h4", {}, el("span", { text: t.order_id.slice(-6) }), el("span", { class: "muted", text: time(t.placed_at) })),
    el("ul", { class: "lines" }, t.lines.map((l) => el("li", { text: `${l.quantity} × ${l.name} (${l.size})${l.modifiers.length ? ` + ${l.modifiers.join(", ")}` : ""}` }))),
    t.note ? el("p", { class: "note", text: `Note: ${t.note}` }) : null,
    el("p", { class: "muted", text: t.estimated_ready_at ? `${t.status} · ready by ${time(t.estimated_ready_at)}` : t.status }),
    t.status === "queued" ? el("button", { type: "button", text: "Start", "aria-label": `Start ${label}`, onclick: () => act(`${path}/start`) }) : null,
    t.status === "started" ? el("button", { type: "button", text: "Ready", "aria-label": `Ready ${label}`, onclick: () => act(`${path}/ready`) }) : null,
  );
}

function equipment(e) {
  const id = `equipment-${e.id}`;
  const select = el(
    "select",
    { id, onchange: () => act(`/api/v1/kitchen/equipment/${e.id}/status`, { status: select.value }) },
    ["ok", "degraded", "out_of_order"].map((s) => el("option", { value: s, selected: s === e.status, text: s.replaceAll("_", " ") })),
  );
  return el("li", { class: `equipment ${e.status}` }, el("label", { for: id, text: e.name }), select);
}

function render(board) {
  const columns = board.stations.filter((s) => s.open || s.tickets.length);
  main.replaceChildren(
    el("p", { id: "kitchen-alert", role: "alert", class: "error" }),
    el(
      "div",
      { class: "board" },
      columns.map((s) =>
        el(
          "section",
          { class: `station ${s.available ? "" : "down"}`, "aria-labelledby": `station-${s.id}`, "data-station": s.id },
          el("h3", { id: `station-${s.id}`, text: s.name }),
          el("p", { class: "muted", text: `${s.staff.length} on shift · capacity ${s.capacity_percent}%${s.available ? "" : " · DOWN"}` }),
          s.open && me && !s.staff.includes(me.id)
            ? el("button", { type: "button", class: "secondary", text: "Work here", "aria-label": `Start my shift at ${s.name}`, onclick: () => shift("PUT", { station: s.id }) })
            : null,
          s.open && me && s.staff.includes(me.id)
            ? el("button", { type: "button", class: "secondary", text: "End my shift", "aria-label": `End my shift at ${s.name}`, onclick: () => shift("DELETE") })
            : null,
          s.tickets.length ? el("ul", { class: "tickets" }, s.tickets.filter((t) => t.status !== "ready").map((t) => ticket(s, t))) : el("p", { class: "muted", text: "Nothing waiting" }),
          s.equipment.length ? el("ul", { class: "equipment-list", "aria-label": `${s.name} equipment` }, s.equipment.map(equipment)) : null,
        ),
      ),
    ),
  );
}

async function load() {
  const look = ++looked;
  try {
    const board = await api.request("GET", "/api/v1/kitchen/board");
    if (look < shown) return;
    shown = look;
    render(board);
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) return signedOut(e.status === 403 ? "The kitchen display needs a barista's account." : null);
    alertText(e.message);
  }
}

// Several messages arrive together (a start is two events): one reload for them.
function soon() {
  clearTimeout(pending);
  pending = setTimeout(load, 50);
}

async function start() {
  me = await api.request("GET", "/api/v1/auth/me").catch(() => null);
  await load();
  if (!api.signedIn) return;
  stop = api.follow(["kitchen"], {
    onOpen: load,
    onMessage: soon,
    onState: (s) => (connection.textContent = s === "live" ? "Live" : "Reconnecting…"),
  });
  // Equipment and shifts change without an order event: look again now and then.
  setInterval(() => api.signedIn && load(), 30000);
}

document.getElementById("sign-out").addEventListener("click", () => (api.signOut(), signedOut()));
if (api.signedIn) start();
else signedOut();
