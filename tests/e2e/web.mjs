// The web clients end to end, in Debian's headless Chromium driven by playwright-core:
// a customer orders and pays at the counter; the kitchen display shows the ticket within a
// second without a reload; the barista starts and readies it; the customer's page shows each
// status live; a second customer never sees the first one's order. Writes screenshots of both
// apps at phone and tablet sizes, and prints what it measured as JSON.
//   GOCOFFEE_BASE, BARISTA_EMAIL, BARISTA_PASSWORD, SCREENSHOTS (browser.mjs)
import assert from "node:assert/strict";
import { PHONE, TABLET, base, browser, customerPage, page, shot } from "./browser.mjs";

const measured = {};

try {
  // The customer registers and sees the menu.
  const customer = await customerPage("ada@example.com");
  await shot(customer, "customer-menu-phone", PHONE);
  await shot(customer, "customer-menu-tablet", TABLET);
  await customer.setViewportSize(PHONE);

  // The kitchen display, signed in as the barista, before the order exists.
  const kitchen = await page(TABLET);
  await kitchen.goto(`${base}/kitchen`);
  await kitchen.getByLabel("Email").fill(process.env.BARISTA_EMAIL);
  await kitchen.getByLabel("Password").fill(process.env.BARISTA_PASSWORD);
  await kitchen.getByRole("button", { name: "Sign in" }).click();
  await kitchen.locator(".board").waitFor();
  await kitchen.getByText("Live", { exact: true }).waitFor();
  await kitchen.getByRole("button", { name: "Start my shift at Espresso bar" }).click();
  await kitchen.getByRole("button", { name: "End my shift at Espresso bar" }).waitFor();
  await kitchen.evaluate(() => (window.notReloaded = true));

  // A latte and a croissant, paid at the counter: keyboard only for the order button.
  await customer.getByRole("button", { name: "Add Caffè Latte" }).click();
  await customer.getByRole("button", { name: "Add Butter Croissant" }).click();
  const placing = customer.waitForResponse((r) => r.url().endsWith("/api/v1/orders") && r.request().method() === "POST");
  await customer.getByRole("button", { name: "Place order" }).focus();
  await customer.keyboard.press("Enter");
  const placed = await (await placing).json();
  const placedAt = Date.now();
  const id = placed.id;
  const short = id.slice(-6);

  // The board shows both parts of the ticket, without a reload.
  await kitchen.locator(`[data-station="espresso-bar"] [data-order="${id}"]`).waitFor({ timeout: 5000 });
  measured.board_shows_ticket_ms = Date.now() - placedAt;
  await kitchen.locator(`[data-station="food"] [data-order="${id}"]`).waitFor({ timeout: 5000 });
  assert.equal(await kitchen.evaluate(() => window.notReloaded), true, "the kitchen display reloaded");
  assert.ok(measured.board_shows_ticket_ms <= 1000, `the ticket took ${measured.board_shows_ticket_ms} ms to reach the board`);

  // The customer's page follows the order by itself.
  const status = customer.locator("#order-status");
  const seen = [];
  await customer.exposeFunction("sawStatus", (text) => seen.push(text));
  await customer.evaluate(() => {
    const node = document.getElementById("order-status");
    window.sawStatus(node.textContent);
    new MutationObserver(() => {
      const now = document.getElementById("order-status");
      if (now && now.textContent !== window.lastStatus) window.sawStatus((window.lastStatus = now.textContent));
    }).observe(document.querySelector("main"), { subtree: true, childList: true, characterData: true });
  });
  await status.filter({ hasText: "Confirmed" }).waitFor({ timeout: 5000 });
  // Both stations are staffed: the ticket and the order carry estimates.
  await kitchen.locator(`[data-station="espresso-bar"] [data-order="${id}"]`).getByText("ready by").waitFor({ timeout: 5000 });
  await customer.locator("#eta").waitFor({ timeout: 5000 });
  measured.customer_eta = await customer.locator("#eta").textContent();
  await shot(kitchen, "kitchen-board-tablet", TABLET);
  await shot(kitchen, "kitchen-board-phone", PHONE);
  await kitchen.setViewportSize(TABLET);

  // The barista starts and readies each station's part by tap.
  for (const station of ["espresso-bar", "food"]) {
    await kitchen.locator(`[data-station="${station}"]`).getByRole("button", { name: `Start order ${short}` }).click();
    await kitchen.locator(`[data-station="${station}"]`).getByRole("button", { name: `Ready order ${short}` }).click();
    await kitchen.locator(`[data-station="${station}"] [data-order="${id}"]`).waitFor({ state: "detached", timeout: 5000 });
  }
  await status.filter({ hasText: "Ready for pickup" }).waitFor({ timeout: 5000 });
  measured.customer_statuses = [...new Set(seen)];
  for (const expected of ["Confirmed", "Preparing", "Ready for pickup"]) {
    assert.ok(measured.customer_statuses.includes(expected), `the customer's page never showed ${expected}: ${measured.customer_statuses}`);
  }
  await shot(customer, "customer-order-phone", PHONE);
  await shot(customer, "customer-order-tablet", TABLET);

  // A second customer sees none of it.
  const other = await customerPage("bob@example.com");
  assert.equal(await other.getByText(short).count(), 0, "the second customer sees the first one's order");
  const probe = await other.evaluate(async (orderId) => {
    const { access_token } = JSON.parse(localStorage.getItem("gocoffee.customer.session"));
    const headers = { authorization: `Bearer ${access_token}` };
    const order = await fetch(`/api/v1/orders/${orderId}`, { headers });
    const ticket = await (await fetch("/api/v1/live/tickets", { method: "POST", headers })).json();
    const stream = await fetch(`/api/v1/live/events?channel=order:${orderId}&ticket=${ticket.ticket}`);
    return { order: order.status, stream: stream.status };
  }, id);
  assert.deepEqual(probe, { order: 404, stream: 404 });
  measured.second_customer = probe;
  console.log(JSON.stringify(measured));
} finally {
  await browser.close();
}
