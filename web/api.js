// The API client both apps share: the session (tokens kept per app in localStorage, refreshed
// once on a 401), JSON requests, and following live channels with a ticket (an EventSource or a
// WebSocket can't send headers): over Server-Sent Events, reconnecting from the last event id,
// or over the WebSocket where there is no stream.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export class Api {
  constructor(app) {
    this.key = `gocoffee.${app}.session`;
    try {
      this.tokens = JSON.parse(localStorage.getItem(this.key) || "null");
    } catch {
      this.tokens = null;
    }
  }

  get signedIn() {
    return this.tokens !== null;
  }

  save(tokens) {
    this.tokens = tokens && { access_token: tokens.access_token, refresh_token: tokens.refresh_token };
    if (this.tokens) localStorage.setItem(this.key, JSON.stringify(this.tokens));
    else localStorage.removeItem(this.key);
  }

  async signIn(email, password, register = false) {
    const path = register ? "/api/v1/auth/register" : "/api/v1/auth/login";
    this.save(await this.send("POST", path, { email, password }, false));
  }

  signOut() {
    this.save(null);
  }

  // `as`: "json" (the API's answers) or "text" (a document such as a QR code's SVG); an error
  // is the API's JSON either way.
  async send(method, path, body, auth = true, headers = {}, as = "json") {
    const init = { method, headers: { accept: as === "json" ? "application/json" : "*/*", ...headers } };
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    if (auth && this.tokens) init.headers.authorization = `Bearer ${this.tokens.access_token}`;
    const response = await fetch(path, init);
    if (response.status === 204) return null;
    if (response.ok && as === "text") return response.text();
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const error = data && data.error;
      throw new ApiError(response.status, error ? error.code : "http_error", error ? error.message : `HTTP ${response.status}`);
    }
    return data;
  }

  // A request with the session's token; an expired token is refreshed once, and a session that
  // can't be refreshed ends (the app then asks to sign in).
  async request(method, path, body, headers = {}, as = "json") {
    try {
      return await this.send(method, path, body, true, headers, as);
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401 || !this.tokens) throw e;
      try {
        this.save(await this.send("POST", "/api/v1/auth/refresh", { refresh_token: this.tokens.refresh_token }, false));
      } catch {
        this.signOut();
        throw e;
      }
      return this.send(method, path, body, true, headers, as);
    }
  }

  // Follows `channels`: `onOpen` runs each time a stream opens (refetch a snapshot then), and
  // `onMessage` with each envelope. Returns a function that stops following. The transport is
  // what the ticket says the platform offers: the event stream where there is one (Spin, the
  // local host), else the WebSocket (AWS's API Gateway can't stream). `?live=websocket` on the
  // page's URL prefers the WebSocket where both are offered.
  follow(channels, { onOpen, onMessage, onState }) {
    let source = null;
    let lastId = null;
    let stopped = false;
    let retry = null;
    // Reconnecting backs off while streams keep failing (1/2 s doubling to 10 s); an open one
    // resets it.
    let delay = 500;
    const again = () => {
      retry = setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
    const opened = () => {
      delay = 500;
      onState?.("live");
      onOpen?.();
    };
    const preferSocket = new URLSearchParams(location.search).get("live") === "websocket";
    const stream = (eventsUrl, ticket) => {
      const query = new URLSearchParams();
      channels.forEach((c) => query.append("channel", c));
      query.set("ticket", ticket);
      if (lastId !== null) query.set("last_event_id", lastId);
      const events = new EventSource(`${eventsUrl}?${query}`);
      events.onopen = opened;
      events.onmessage = (event) => {
        lastId = event.lastEventId || lastId;
        if (event.data) onMessage(JSON.parse(event.data));
      };
      // The stream ends on a bound (and the ticket has expired by then): reopen with a new
      // ticket from the last id, instead of letting the browser retry the old URL.
      events.onerror = () => {
        events.close();
        onState?.("reconnecting");
        again();
      };
      return events;
    };
    // API Gateway's contract: subscribe to each channel once connected; the connection is open
    // (and the snapshot worth refetching) once every subscription is answered.
    const socket = (socketUrl, ticket) => {
      const url = new URL(socketUrl, location.href);
      url.protocol = url.protocol === "https:" || url.protocol === "wss:" ? "wss:" : "ws:";
      url.searchParams.set("ticket", ticket);
      const ws = new WebSocket(url);
      let unanswered = channels.length;
      ws.onopen = () => channels.forEach((channel) => ws.send(JSON.stringify({ action: "subscribe", channel })));
      ws.onmessage = (event) => {
        const data = JSON.parse(event.data);
        if (!("action" in data)) return onMessage(data);
        if (!data.ok) console.warn(`live: ${data.channel}: ${data.error?.message}`);
        if (--unanswered === 0) opened();
      };
      ws.onclose = () => {
        if (stopped) return;
        onState?.("reconnecting");
        again();
      };
      return ws;
    };
    const connect = async () => {
      if (stopped) return;
      try {
        const offer = await this.request("POST", "/api/v1/live/tickets");
        const useSocket = offer.socket_url && (preferSocket || !offer.events_url);
        if (!useSocket && !offer.events_url) throw new Error("no live transport offered");
        source = useSocket ? socket(offer.socket_url, offer.ticket) : stream(offer.events_url, offer.ticket);
      } catch (e) {
        onState?.("offline");
        again();
      }
    };
    connect();
    return () => {
      stopped = true;
      clearTimeout(retry);
      source?.close();
    };
  }
}

// The highest version seen per order: delivery is at least once and may come out of order.
export class Versions {
  constructor() {
    this.seen = new Map();
  }
  fresh(envelope) {
    const have = this.seen.get(envelope.order_id) || 0;
    if (envelope.version <= have) return false;
    this.seen.set(envelope.order_id, envelope.version);
    return true;
  }
  note(orderId, version) {
    if ((this.seen.get(orderId) || 0) < version) this.seen.set(orderId, version);
  }
}

const dollars = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });

// Money is integer cents everywhere; only its display divides.
export const money = (cents) => dollars.format(cents / 100);

export const time = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

// The sign-in form both apps start with.
export function signInForm(api, { title, allowRegister, onDone }) {
  const status = el("p", { role: "alert", class: "error" });
  const email = el("input", { id: "email", type: "email", autocomplete: "username", required: true });
  const password = el("input", { id: "password", type: "password", autocomplete: "current-password", required: true, minlength: 8 });
  const submit = async (register) => {
    status.textContent = "";
    try {
      await api.signIn(email.value.trim(), password.value, register);
      onDone();
    } catch (e) {
      status.textContent = e.message;
    }
  };
  return el(
    "form",
    { class: "card sign-in", onsubmit: (e) => (e.preventDefault(), submit(false)) },
    el("h2", { text: title }),
    el("label", { for: "email", text: "Email" }),
    email,
    el("label", { for: "password", text: "Password" }),
    password,
    el("div", { class: "actions" }, el("button", { type: "submit", text: "Sign in" }), allowRegister && el("button", { type: "button", class: "secondary", text: "Create an account", onclick: () => submit(true) })),
    status,
  );
}
