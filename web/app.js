// The customer app: the menu with pictures, a cart, placing an order to pay at the counter or in
// crypto (the payment request shown as a QR code a wallet scans), and the order's status live,
// with its estimated ready time.
import { Api, ApiError, Versions, el, money, signInForm, time } from "{{api.js}}";

const api = new Api("customer");
const main = document.querySelector("main");
const cart = [];
let stopFollowing = null;
// The crypto payment methods the café takes (GET /api/v1/payments/methods), and the one chosen:
// null is at the counter.
let methods = [];
let chosen = null;

const STEPS = [
  ["pending", "Placed"],
  ["confirmed", "Confirmed"],
  ["preparing", "Preparing"],
  ["ready", "Ready for pickup"],
  ["completed", "Collected"],
];

function show(...nodes) {
  stopFollowing?.();
  stopFollowing = null;
  main.replaceChildren(...nodes);
  main.querySelector("h2")?.focus();
}

function signedOut() {
  show(signInForm(api, { title: "Sign in to order", allowRegister: true, onDone: menu }));
}

function picture(item) {
  if (item.image_url) return el("img", { src: item.image_url, alt: "", class: "picture", loading: "lazy" });
  return el("div", { class: `picture placeholder ${item.category}`, "aria-hidden": "true", text: item.name.slice(0, 1) });
}

function itemCard(item) {
  const id = `size-${item.id}`;
  const size =
    item.sizes.length > 1
      ? el("select", { id }, item.sizes.map((s) => el("option", { value: s.size, text: `${s.size} · ${money(s.price_cents)}` })))
      : null;
  const add = () => {
    const chosen = size ? item.sizes.find((s) => s.size === size.value) : item.sizes[0];
    const line = cart.find((l) => l.item_id === item.id && l.size === chosen.size);
    if (line) line.quantity += 1;
    else cart.push({ item_id: item.id, name: item.name, size: chosen.size, price_cents: chosen.price_cents, quantity: 1 });
    renderCart();
  };
  return el(
    "li",
    { class: "card item" },
    picture(item),
    el("h3", { text: item.name }),
    el("p", { class: "muted", text: item.description }),
    size && el("label", { for: id, class: "visually-hidden", text: `Size of ${item.name}` }),
    size || el("p", { text: money(item.sizes[0].price_cents) }),
    item.available
      ? el("button", { type: "button", text: "Add", "aria-label": `Add ${item.name}`, onclick: add })
      : el("p", { class: "badge", text: "Unavailable right now" }),
  );
}

function renderCart() {
  const section = document.getElementById("cart");
  if (!section) return;
  const total = cart.reduce((sum, l) => sum + l.price_cents * l.quantity, 0);
  const place = async () => {
    status.textContent = "";
    try {
      const order = await api.request(
        "POST",
        "/api/v1/orders",
        { lines: cart.map(({ item_id, size, quantity }) => ({ item_id, size, quantity })), payment_method: chosen ? chosen.payment_method : "pay_at_counter" },
        { "idempotency-key": crypto.randomUUID() },
      );
      cart.length = 0;
      follow(order.id);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return signedOut();
      status.textContent = e.message;
    }
  };
  const status = el("p", { role: "alert", class: "error" });
  section.replaceChildren(
    el("h2", { text: "Your order" }),
    cart.length === 0
      ? el("p", { class: "muted", text: "Nothing yet: add something from the menu." })
      : el(
          "ul",
          { class: "lines" },
          cart.map((l) =>
            el(
              "li",
              {},
              el("span", { text: `${l.quantity} × ${l.name} (${l.size})` }),
              el("span", { text: money(l.price_cents * l.quantity) }),
              el("button", {
                type: "button",
                class: "secondary",
                text: "Remove",
                "aria-label": `Remove ${l.name}`,
                onclick: () => (cart.splice(cart.indexOf(l), 1), renderCart()),
              }),
            ),
          ),
        ),
    el("p", { class: "total" }, el("span", { text: "Total" }), el("strong", { text: money(total) })),
    paymentChoice(),
    el("button", { type: "button", text: "Place order", disabled: cart.length === 0, onclick: place }),
    status,
  );
}

// How to pay: at the counter, or one of the crypto methods (when the café takes any).
function paymentChoice() {
  const counter = "You pay at the counter when you collect.";
  if (methods.length === 0) return el("p", { class: "muted", text: counter });
  const option = (method, label) => {
    const id = method ? `pay-${method.chain}-${method.asset}` : "pay-counter";
    return el(
      "div",
      { class: "choice" },
      el("input", { type: "radio", name: "payment", id, checked: chosen === method, onchange: () => ((chosen = method), renderCart()) }),
      el("label", { for: id, text: label }),
    );
  };
  return el(
    "fieldset",
    { class: "payment-choice" },
    el("legend", { text: "How to pay" }),
    option(null, "At the counter"),
    methods.map((m) => option(m, `${m.asset} on ${m.chain}`)),
    el("p", { class: "muted", text: chosen ? `You pay in ${chosen.asset} from your wallet; the kitchen starts once it arrives.` : counter }),
  );
}

async function menu() {
  if (!api.signedIn) return signedOut();
  if (methods.length === 0) methods = (await api.request("GET", "/api/v1/payments/methods").catch(() => ({ methods: [] }))).methods;
  const { items } = await api.send("GET", "/api/v1/menu", undefined, false);
  show(
    el(
      "div",
      { class: "layout" },
      el("section", { "aria-labelledby": "menu-title" }, el("h2", { id: "menu-title", tabindex: "-1", text: "Menu" }), el("ul", { class: "grid" }, items.map(itemCard))),
      el("aside", { id: "cart", class: "card", "aria-live": "polite" }),
    ),
  );
  renderCart();
  const mine = await api.request("GET", "/api/v1/orders?limit=5").catch(() => ({ items: [] }));
  const open = mine.items.filter((o) => !["completed", "cancelled", "refunded"].includes(o.status));
  if (open.length) {
    document.getElementById("cart").prepend(
      el("nav", { "aria-label": "Open orders" }, open.map((o) => el("button", { type: "button", class: "secondary", text: `Order ${o.id.slice(-6)}: ${o.status}`, onclick: () => follow(o.id) }))),
    );
  }
}

function follow(id) {
  const versions = new Versions();
  const view = el("section", { class: "card order", "aria-labelledby": "order-title" });
  const live = el("p", { class: "muted", id: "connection", text: "Connecting…" });
  show(view);
  let current = null;
  let active = true;
  const payment = el("section", { class: "payment", "aria-labelledby": "payment-title" });
  let paymentShown = null;
  const render = (order) => {
    // A refresh that started before a newer one (or before a message) may answer after it.
    if (current && order.version < current.version) return;
    current = order;
    versions.note(order.id, order.version);
    const reached = STEPS.findIndex(([s]) => s === order.status);
    const parts = [
      el("h2", { id: "order-title", tabindex: "-1", text: `Order ${order.id.slice(-6)}` }),
      el("p", { id: "order-status", class: `status ${order.status}`, role: "status", "aria-live": "polite", text: statusText(order) }),
      order.estimated_ready_at ? el("p", { id: "eta", text: `Expected ready around ${time(order.estimated_ready_at)}` }) : null,
      el(
        "ol",
        { class: "steps" },
        STEPS.map(([s, label], i) => el("li", { class: reached >= i ? "done" : "", "aria-current": reached === i ? "step" : null, text: label })),
      ),
      el("ul", { class: "lines" }, order.lines.map((l) => el("li", {}, el("span", { text: `${l.quantity} × ${l.name} (${l.size})` }), el("span", { text: money(l.line_total_cents) })))),
      el("p", { class: "total" }, el("span", { text: "Total" }), el("strong", { text: money(order.total_cents) })),
      order.payment_method.crypto && order.status === "pending" ? payment : null,
      live,
      el("button", { type: "button", class: "secondary", text: "Back to the menu", onclick: menu }),
    ];
    view.replaceChildren(...parts.filter(Boolean));
  };
  // A crypto order waits for its payment: its request (the intent the payment service makes
  // shortly after the order) shown once, as a QR code, the amount, the address and a wallet link.
  const showPayment = async (order) => {
    if (!order.payment_method.crypto || order.status !== "pending") return;
    const preparing = () => {
      payment.replaceChildren(el("p", { class: "muted", text: "Preparing your payment request…" }));
      setTimeout(() => active && refresh(), 1000);
    };
    const link = order.links.payment;
    if (!link) return preparing();
    // The order names its payment as soon as it asks for one; the payment service makes it from
    // the same event, in parallel, so it may not exist yet: ask again shortly (no event says when).
    const intent = await api.request("GET", link).catch((e) => {
      if (e instanceof ApiError && e.status === 404) return null;
      throw e;
    });
    if (!intent) return preparing();
    if (paymentShown === intent.status) return;
    paymentShown = intent.status;
    payment.replaceChildren(...(await paymentView(intent)));
  };
  const refresh = async () => {
    try {
      const order = await api.request("GET", `/api/v1/orders/${id}`);
      render(order);
      await showPayment(current);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) signedOut();
    }
  };
  refresh();
  const stop = api.follow([`order:${id}`], {
    onOpen: refresh,
    onMessage: (m) => {
      if (m.order_id !== id || !versions.fresh(m)) return;
      if (current) render({ ...current, status: m.status, version: m.version });
      refresh();
    },
    onState: (s) => (live.textContent = s === "live" ? "Live: this page updates by itself." : "Reconnecting…"),
  });
  stopFollowing = () => ((active = false), stop());
}

// What paying an intent takes: its QR code (an SVG the payment service draws, fetched with the
// session's token and put in the page as markup), the amount, where to, until when, a link a
// wallet on this device opens, and a field for the transaction's hash, checked at once.
async function paymentView(intent) {
  const qr = await api.request("GET", `${intent.links.self}/qr`, undefined, {}, "text").catch(() => null);
  const figure = el("figure", { class: "qr" });
  const svg = qr && new DOMParser().parseFromString(qr, "image/svg+xml").documentElement;
  if (svg && svg.nodeName === "svg") {
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `QR code of the payment request: ${intent.amount_due.display} ${intent.asset} on ${intent.chain}`);
    figure.append(document.importNode(svg, true));
  }
  figure.append(el("figcaption", { text: "Scan with your wallet" }));
  const hash = el("input", { id: "tx-hash", inputmode: "text", autocomplete: "off", spellcheck: "false", pattern: "0x[0-9a-fA-F]{64}", required: true });
  const result = el("p", { role: "alert", class: "error" });
  const report = async (e) => {
    e.preventDefault();
    result.textContent = "";
    try {
      const updated = await api.request("POST", `${intent.links.self}/transactions`, { tx_hash: hash.value.trim() });
      result.textContent = updated.status === "paid" ? "" : `Payment seen: ${updated.status.replace("_", " ")}.`;
    } catch (err) {
      result.textContent = err.message;
    }
  };
  return [
    el("h3", { id: "payment-title", text: `Pay ${intent.amount_due.display} ${intent.asset}` }),
    el("p", { class: "muted", id: "payment-state", text: `On ${intent.chain}, by ${time(intent.expires_at)}. Status: ${intent.status.replace("_", " ")}.` }),
    figure,
    el("p", {}, el("span", { text: "To " }), el("code", { id: "deposit-address", class: "address", text: intent.deposit_address })),
    el("p", {}, el("a", { href: intent.payment_uri, class: "button-link", text: "Open in my wallet" })),
    el(
      "form",
      { onsubmit: report },
      el("label", { for: "tx-hash", text: "Paid already? The transaction's hash" }),
      hash,
      el("button", { type: "submit", class: "secondary", text: "Check my payment" }),
      result,
    ),
  ];
}

function statusText(order) {
  if (order.status === "pending" && order.payment_method.crypto) return "Awaiting payment";
  const step = STEPS.find(([s]) => s === order.status);
  return step ? step[1] : order.status[0].toUpperCase() + order.status.slice(1);
}

document.getElementById("sign-out").addEventListener("click", () => (api.signOut(), signedOut()));
menu().catch((e) => show(el("p", { role: "alert", class: "error", text: e.message })));
