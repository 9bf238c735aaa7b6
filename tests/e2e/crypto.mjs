// A crypto payment in the customer app, end to end in headless Chromium: the customer picks USDC,
// orders, and gets the payment request as a QR code; the code, read back as a wallet's camera
// would (jsQR), is exactly the intent's EIP-681 URI; the wallet pays on the chain (anvil); the
// customer reports the transaction's hash, and the page turns to Confirmed by itself.
// Screenshots of the cart and the payment step; prints what it measured as JSON. With
// LIVE=websocket the page follows the order over the WebSocket, and the run checks it did.
//   GOCOFFEE_BASE, SCREENSHOTS (browser.mjs), ANVIL_URL, TOKEN (the USDC contract), PAYER (a funded
//   unlocked account)
import assert from "node:assert/strict";
import jsQR from "jsqr";
import { PHONE, TABLET, browser, customerPage, shot } from "./browser.mjs";

const measured = {};

async function rpc(method, params) {
  const response = await fetch(process.env.ANVIL_URL, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
  });
  const body = await response.json();
  if (body.error) throw new Error(`${method}: ${body.error.message}`);
  return body.result;
}

// The wallet's side: an ERC-20 `transfer(to, amount)` from the payer, mined at once.
async function payToken(to, baseUnits) {
  const word = (hex) => hex.replace(/^0x/, "").toLowerCase().padStart(64, "0");
  const data = `0xa9059cbb${word(to)}${word(BigInt(baseUnits).toString(16))}`;
  return rpc("eth_sendTransaction", [{ from: process.env.PAYER, to: process.env.TOKEN, data }]);
}

// Reads the QR code in `svgMarkup` as a camera would: drawn at 320 px on a blank page (no app,
// so no CSP to work around), its pixels decoded by jsQR.
async function readQr(svgMarkup) {
  const blank = await browser.newPage();
  try {
    const { width, height, pixels } = await blank.evaluate(async (markup) => {
      const image = new Image();
      image.src = `data:image/svg+xml;base64,${btoa(markup)}`;
      await image.decode();
      const canvas = document.createElement("canvas");
      canvas.width = canvas.height = 320;
      const context = canvas.getContext("2d");
      context.fillStyle = "#fff";
      context.fillRect(0, 0, 320, 320);
      context.drawImage(image, 0, 0, 320, 320);
      return { width: 320, height: 320, pixels: Array.from(context.getImageData(0, 0, 320, 320).data) };
    }, svgMarkup);
    return jsQR(Uint8ClampedArray.from(pixels), width, height)?.data ?? null;
  } finally {
    await blank.close();
  }
}

try {
  const customer = await customerPage("carol@example.com");
  const sockets = [];
  customer.on("websocket", (ws) => sockets.push(ws));
  // The café takes USDC on Polygon: the cart offers it beside the counter.
  await customer.getByRole("button", { name: "Add Caffè Latte" }).click();
  await customer.getByLabel("USDC on polygon").check();
  await customer.getByText("You pay in USDC from your wallet").waitFor();
  await shot(customer, "customer-cart-crypto-phone", PHONE);
  const placing = customer.waitForResponse((r) => r.url().endsWith("/api/v1/orders") && r.request().method() === "POST");
  await customer.getByRole("button", { name: "Place order" }).click();
  const placed = await (await placing).json();
  assert.deepEqual(placed.payment_method, { crypto: { chain: "polygon", asset: "USDC" } });

  // The payment request: status, amount, QR code, address and wallet link.
  await customer.locator("#order-status").filter({ hasText: "Awaiting payment" }).waitFor({ timeout: 5000 });
  const qr = customer.getByRole("img", { name: /QR code of the payment request/ });
  await qr.waitFor({ timeout: 10000 });
  const intent = await customer.evaluate(async (orderId) => {
    const { access_token } = JSON.parse(localStorage.getItem("gocoffee.customer.session"));
    const headers = { authorization: `Bearer ${access_token}` };
    const order = await (await fetch(`/api/v1/orders/${orderId}`, { headers })).json();
    return (await fetch(order.links.payment, { headers })).json();
  }, placed.id);
  await customer.getByRole("heading", { name: `Pay ${intent.amount_due.display} USDC` }).waitFor();
  assert.equal(await customer.locator("#deposit-address").textContent(), intent.deposit_address);
  assert.equal(await customer.getByRole("link", { name: "Open in my wallet" }).getAttribute("href"), intent.payment_uri);
  measured.qr = await readQr(await qr.evaluate((svg) => svg.outerHTML));
  assert.equal(measured.qr, intent.payment_uri, "the QR code a wallet scans is the payment URI");
  await shot(customer, "customer-pay-phone", PHONE);
  await shot(customer, "customer-pay-tablet", TABLET);

  // A malformed hash is stopped by the form, an unknown one refused by the server; the real one is checked on the chain at once, and the
  // order, paid, goes to the kitchen: the page shows it without a reload.
  await customer.evaluate(() => (window.notReloaded = true));
  const hash = customer.getByLabel("Paid already? The transaction's hash");
  await hash.fill("0x1234");
  await customer.getByRole("button", { name: "Check my payment" }).click();
  assert.equal(await hash.evaluate((input) => input.validity.patternMismatch), true, "a malformed hash is sent");
  await hash.fill(`0x${"ab".repeat(32)}`);
  await customer.getByRole("button", { name: "Check my payment" }).click();
  measured.unknown_tx = await customer.locator(".payment [role=alert]").filter({ hasText: /./ }).textContent({ timeout: 5000 });
  const tx = await payToken(intent.deposit_address, intent.amount_due.base_units);
  const reported = Date.now();
  await hash.fill(tx);
  await customer.getByRole("button", { name: "Check my payment" }).click();
  await customer.locator("#order-status").filter({ hasText: "Confirmed" }).waitFor({ timeout: 10000 });
  measured.confirmed_after_report_ms = Date.now() - reported;
  assert.equal(await customer.evaluate(() => window.notReloaded), true, "the page reloaded");
  assert.equal(await customer.locator("figure.qr").count(), 0, "a paid order still asks for payment");
  measured.live = sockets.map((ws) => new URL(ws.url()).pathname);
  if (process.env.LIVE === "websocket") {
    assert.ok(measured.live.includes("/api/v1/live/socket"), `the page followed the order over the WebSocket: ${measured.live}`);
  }
  console.log(JSON.stringify(measured));
} finally {
  await browser.close();
}
