// The viewer's browser test, driven by integrations/http/tests/viewer_browser.cpp, which
// serves the page while it emits. Opens the page in Debian's Chromium (puppeteer-core: no
// browser of its own) and checks from the DOM that events appear, that the filters work,
// that pause stops the table; then says READY on stdout, reads the emitter's stats() (one
// JSON line on stdin, once drained) and waits until the adapter panels show exactly those
// numbers; saves screenshots (light and dark). Prints PASS or FAIL <reason>; exit status
// 0 only on PASS.
//
//   node viewer_check.mjs --url URL --chromium /usr/bin/chromium --out DIR
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith("--") ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []));
const deadline = (ms) => Date.now() + ms;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once("line", resolve));

class Failure extends Error {}
function check(condition, what) { if (!condition) throw new Failure(what); }

// Polls `probe` (in the page) until `ok(value)` or 10 s; returns the last value.
async function waitFor(page, probe, ok, what, ms = 10000) {
  const until = deadline(ms);
  let value;
  for (;;) {
    value = await page.evaluate(probe);
    if (ok(value)) return value;
    if (Date.now() > until) throw new Failure(what + " (last seen: " + JSON.stringify(value) + ")");
    await sleep(100);
  }
}

const rows = () => [...document.querySelectorAll("#events tbody tr.event")].map((tr) => ({
  id: tr.dataset.id, name: tr.dataset.name, text: tr.textContent }));
const panels = () => Object.fromEntries([...document.querySelectorAll("#adapters .adapter")].map((card) => [
  card.dataset.adapter,
  Object.fromEntries([...card.querySelectorAll("dd")].map((dd) => [dd.dataset.stat,
    dd.dataset.stat.startsWith("latency_") ? (dd.dataset.value ? Number(dd.dataset.value) : null)
                                           : Number(dd.textContent)]))]));

const profile = mkdtempSync(join(tmpdir(), "emissions-chromium-"));
let browser;
try {
  browser = await puppeteer.launch({
    executablePath: args.chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--user-data-dir=" + profile],
  });
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("requestfailed", (r) => errors.push("request failed: " + r.url()));
  await page.goto(args.url, { waitUntil: "load" });

  // Events appear, newest first, with their names.
  const first = await waitFor(page, rows, (r) => r.length >= 10, "at least 10 event rows");
  check(first.every((r) => r.name === "order_created" || r.name === "payment_captured"), "row names");
  await waitFor(page, () => document.getElementById("status").textContent, (s) => s === "live", "status live");

  // An event expands to its full envelope. Clicked from inside the page: the table is
  // re-rendered as events arrive, so a row found by one call may be gone when a second
  // call clicks it ("Node is either not clickable or not an Element", seen under TSan).
  await page.evaluate(() => document.querySelector("#events tbody tr.event").click());
  const detail = await waitFor(page, () => document.querySelector("#events tbody tr.detail pre")?.textContent || "",
                               (t) => t.includes('"payload"') && t.includes('"emitted_at"'), "expanded envelope");
  check(JSON.parse(detail).id, "envelope has an id");

  // Filter by name, then by text.
  await waitFor(page, () => [...document.querySelectorAll("#filter-name option")].map((o) => o.value),
                (v) => v.includes("payment_captured"), "name filter offers payment_captured");
  await page.select("#filter-name", "payment_captured");
  await waitFor(page, rows, (r) => r.length > 0 && r.every((x) => x.name === "payment_captured"),
                "only payment_captured rows");
  await page.select("#filter-name", "");
  await page.type("#filter-text", "needle-3");
  await waitFor(page, rows, (r) => r.length > 0 && r.every((x) => x.text.includes("needle-3")),
                "only rows containing needle-3");
  await page.click("#filter-text", { clickCount: 3 });
  await page.keyboard.press("Backspace");
  await waitFor(page, rows, (r) => r.some((x) => !x.text.includes("needle-3")), "text filter cleared");

  // Pause: the table stops while events keep coming; resume: it moves again.
  await page.click("#pause");
  check(await page.$eval("#pause", (b) => b.getAttribute("aria-pressed")) === "true", "pause pressed");
  await sleep(300);  // a render already scheduled may still land
  const frozen = JSON.stringify(await page.evaluate(rows));
  const countsBefore = await page.evaluate(() => document.getElementById("summary").textContent);
  await sleep(1500);
  const during = JSON.stringify(await page.evaluate(rows));
  check(during === frozen, "table changed while paused: " + frozen.slice(0, 300) + " -> " + during.slice(0, 300));
  const countsAfter = await page.evaluate(() => document.getElementById("summary").textContent);
  check(countsAfter !== countsBefore, "events kept flowing during the pause (summary " + countsAfter + ")");
  await page.click("#pause");
  await waitFor(page, rows, (r) => JSON.stringify(r) !== frozen, "table moves after resume");

  // The rate chart lists the names with their rates.
  await waitFor(page, () => [...document.querySelectorAll("#legend .rate")].map((e) => e.dataset.name),
                (n) => n.includes("order_created") && n.includes("payment_captured"), "rate legend");

  // The panels match stats() once the emitter is drained.
  process.stdout.write("READY\n");
  const expected = JSON.parse(await nextLine());
  const shown = await waitFor(page, panels, (p) => expected.every((a) => p[a.name] &&
      ["delivered", "failed", "filtered", "dropped", "retried", "dead_lettered", "queued",
       "latency_p50", "latency_p99"].every((k) => p[a.name][k] === a[k])),
      "panels equal to stats()");
  check(Object.keys(shown).length === expected.length, "one panel per adapter");
  check(errors.length === 0, "page errors: " + errors.join("; "));

  await page.screenshot({ path: join(args.out, "viewer.png") });
  await page.emulateMediaFeatures([{ name: "prefers-color-scheme", value: "dark" }]);
  await sleep(100);
  check(await page.evaluate(() => getComputedStyle(document.body).backgroundColor) !== "rgb(247, 247, 249)",
        "dark theme follows prefers-color-scheme");
  await page.screenshot({ path: join(args.out, "viewer-dark.png") });
  process.stdout.write("PASS\n");
  process.exitCode = 0;
} catch (e) {
  process.stdout.write("FAIL " + (e instanceof Failure ? e.message : e.stack) + "\n");
  process.exitCode = 1;
} finally {
  if (browser) await browser.close();
  lines.close();
  rmSync(profile, { recursive: true, force: true });
}
