// Headless Debian Chromium driven by playwright-core, for the browser-client tests.
// Whether /usr/bin/chromium is here is decided by helpers/components.ts (`needing("chromium")`).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { CHROMIUM_PATH } from "./components.ts";

export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** Launch Chromium with a fresh profile directory (playwright passes it as --user-data-dir). */
export async function launchBrowser(): Promise<Browser> {
  const userDataDir = mkdtempSync(join(tmpdir(), "wasmnet-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: CHROMIUM_ARGS,
  });
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Problems a page reported on its own: uncaught exceptions and unhandled promise rejections. */
export interface PageProblems {
  errors: string[];
}

/**
 * A page on `origin` (any URL of the wasmnet server that answers GET, e.g. /healthz) with the
 * problem recorders installed. `unhandledrejection` events are recorded in the page as well as
 * through playwright's `pageerror`.
 */
export async function openPage(browser: Browser, origin: string, initScripts: string[] = []): Promise<{ page: Page; problems: PageProblems }> {
  const page = await browser.context.newPage();
  const problems: PageProblems = { errors: [] };
  page.on("pageerror", (e) => problems.errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.errors.push(`console.error: ${m.text()}`);
  });
  await page.addInitScript(() => {
    const w = window as unknown as { __unhandled: string[] };
    w.__unhandled = [];
    window.addEventListener("unhandledrejection", (e) => {
      w.__unhandled.push(String((e as PromiseRejectionEvent).reason?.stack ?? (e as PromiseRejectionEvent).reason));
    });
  });
  for (const s of initScripts) await page.addInitScript({ content: s });
  // The browser asks for /favicon.ico on its own; the wasmnet server answers it 426 (not an upgrade).
  await page.route("**/favicon.ico", (route) => route.fulfill({ status: 204, body: "" }));
  await page.goto(origin);
  return { page, problems };
}

/** Unhandled rejections recorded inside the page so far. */
export async function unhandledIn(page: Page): Promise<string[]> {
  return page.evaluate(() => (window as unknown as { __unhandled: string[] }).__unhandled);
}
