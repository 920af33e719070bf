// Drives Corral's status page (/internal/ui) in Debian's headless Chromium with
// playwright-core, for tests/ui.rs, which starts Corral and the mock backends and answers
// this script's requests on stdin/stdout:
//
//   node tests/ui/ui_test.mjs <corral-url> <corral-with-token-url> <token> [screenshot.png]
//
// Writes `KILL gpu-1` when the page shows the fleet, and expects a line `killed` once that
// backend refuses connections; prints `OK` and exits 0 when every check held, else prints
// the failure and exits 1. playwright-core is loaded from $CORRAL_UI_NODE_MODULES.
import { createRequire } from "node:module";
import { join } from "node:path";
import { createInterface } from "node:readline";

const [open, locked, token, screenshot] = process.argv.slice(2);
const require = createRequire(join(process.env.CORRAL_UI_NODE_MODULES, "x.js"));
const { chromium } = require("playwright-core");

const lines = createInterface({ input: process.stdin });
const incoming = [];
let waiting = null;
lines.on("line", (l) => (waiting ? (waiting(l), (waiting = null)) : incoming.push(l)));
const nextLine = () =>
  incoming.length ? Promise.resolve(incoming.shift()) : new Promise((r) => (waiting = r));

function check(cond, what) {
  if (!cond) throw new Error("failed: " + what);
  console.error("ui: " + what);
}

// No --user-data-dir here: playwright gives every launch a fresh temporary profile of its
// own (and refuses one passed as an argument), removed when the browser closes.
const browser = await chromium.launch({
  executablePath: process.env.CORRAL_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  timeout: 20000,
});
let code = 0;
try {
  // ---- the fleet, live ----
  const context = await browser.newContext({ viewport: { width: 1100, height: 420 } });
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  await page.goto(open + "/internal/ui");
  await page.waitForFunction(() => document.querySelectorAll("tr[data-endpoint]").length === 3);
  await page.waitForSelector('tr[data-endpoint="gpu-3"][data-status="unhealthy"]');
  await page.waitForSelector('tr[data-endpoint="gpu-1"][data-status="healthy"]');
  await page.waitForSelector('tr[data-endpoint="gpu-2"][data-status="healthy"]');
  check(true, "the page shows every endpoint, gpu-3 unhealthy");
  const word = await page.textContent('tr[data-endpoint="gpu-3"] .status');
  check(word.trim() === "unhealthy", "the status is a word as well as a colour");
  await page.waitForSelector("#live.on");
  check(true, "the event stream is connected");
  if (screenshot) {
    // A few polls' worth of latency history for the picture.
    await page.waitForFunction(
      () => document.querySelectorAll('tr[data-endpoint="gpu-1"] svg.spark rect').length >= 6,
      null, { timeout: 20000 });
    await page.screenshot({ path: screenshot, fullPage: true });
    check(true, "screenshot written to " + screenshot);
  }

  await page.evaluate(() => (window.__sameDocument = true));
  console.log("KILL gpu-1");
  check((await nextLine()) === "killed", "gpu-1 was killed");
  const killed = Date.now();
  await page.waitForSelector('tr[data-endpoint="gpu-1"][data-status="unhealthy"]', { timeout: 3000 });
  const took = Date.now() - killed;
  check(await page.evaluate(() => window.__sameDocument === true), "no reload");
  check(took < 2000, `gpu-1's row turned unhealthy ${took} ms after the kill (checks every 500 ms)`);

  // ---- a phone, in dark mode ----
  await page.setViewportSize({ width: 390, height: 800 });
  await page.emulateMedia({ colorScheme: "dark" });
  const fits = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
  check(fits, "a 390 px wide phone needs no horizontal scrolling");
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const [r, g, b] = bg.match(/\d+/g).map(Number);
  check(r + g + b < 150, `dark mode has a dark background (${bg})`);
  await context.close();

  // ---- with internal_token set ----
  const guarded = await browser.newContext();
  const gpage = await guarded.newPage();
  gpage.setDefaultTimeout(10000);
  await gpage.goto(locked + "/internal/ui");
  await gpage.waitForSelector("#login:not([hidden])");
  check(true, "with a token set, the page asks for it");
  await gpage.fill("#token", "wrong");
  await gpage.press("#token", "Enter");
  await gpage.waitForFunction(() => document.getElementById("error").textContent.includes("refused"));
  check(true, "a wrong token is refused, and asked for again");
  await gpage.fill("#token", token);
  await gpage.press("#token", "Enter");
  await gpage.waitForFunction(() => document.querySelectorAll("tr[data-endpoint]").length === 1);
  await gpage.waitForSelector("#live.on");
  check(true, "with the token, the page shows the fleet and follows the events");
  check(!gpage.url().includes(token), "the token is not in the URL");
  const stored = await gpage.evaluate(() => localStorage.length + sessionStorage.length);
  check(stored === 0, "nothing is kept in storage");
  await guarded.close();
  console.log("OK");
} catch (e) {
  console.error("ui: " + (e && e.stack ? e.stack : e));
  code = 1;
} finally {
  await browser.close();
  lines.close();
}
process.exit(code);
