// What the end-to-end scripts share: Debian's Chromium under playwright-core, pages that fail the
// run on a script error, the customer app up to its menu, and full-page screenshots.
//   GOCOFFEE_BASE (the host), SCREENSHOTS (a folder), CHROMIUM (default /usr/bin/chromium), LIVE
//   (`websocket`: the apps follow orders over the WebSocket where the stream is offered too)
import { chromium } from "playwright-core";

export const base = process.env.GOCOFFEE_BASE;
export const PHONE = { width: 390, height: 844 };
export const TABLET = { width: 1280, height: 800 }; // a 10-inch tablet, landscape
// What the apps' URLs carry: the live transport to prefer.
export const query = process.env.LIVE ? `?live=${process.env.LIVE}` : "";

export const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // No sandbox as root; no background traffic to Google's hosts on a closed network.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

export async function page(viewport) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const p = await context.newPage();
  p.on("pageerror", (e) => {
    throw new Error(`a script error on ${p.url()}: ${e.message}`);
  });
  return p;
}

// Opens the customer app and registers `email`, up to the menu.
export async function customerPage(email) {
  const p = await page(PHONE);
  await p.goto(`${base}/${query}`);
  await p.getByLabel("Email").fill(email);
  await p.getByLabel("Password").fill("password 123");
  await p.getByRole("button", { name: "Create an account" }).click();
  await p.getByRole("heading", { name: "Menu" }).waitFor();
  return p;
}

export async function shot(p, name, viewport) {
  await p.setViewportSize(viewport);
  await p.screenshot({ path: `${process.env.SCREENSHOTS}/${name}.png`, fullPage: true });
}
