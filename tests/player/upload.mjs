// End-to-end check of the upload panel in a real headless Chromium: the
// admin listener serves the player with its upload panel; a file picked in
// the page streams to POST /admin/uploads, and the asset it becomes plays.
//
// Usage: node tests/player/upload.mjs <admin-url> <token> <file> <screenshot.png>
// Exits 0 when every step passes; otherwise prints the failing step and the
// browser log, and exits 1. Run by tests/player_e2e.rs.
import fs from "node:fs";
import path from "node:path";
import { check, launch, stepper } from "./browser.mjs";

const [adminUrl, token, file, shotPath] = process.argv.slice(2);
if (!adminUrl || !token || !file || !shotPath) {
  console.error("usage: node upload.mjs <admin-url> <token> <file> <screenshot.png>");
  process.exit(2);
}
const STEP_TIMEOUT_MS = 40_000;
const hardStop = setTimeout(() => {
  console.error("FAIL: the whole run exceeded 60 s");
  process.exit(1);
}, 60_000);

const { context, page, browserLog, close } = await launch("beam-edge-upload-", STEP_TIMEOUT_MS);

const step = stepper(close, browserLog, async () => {
  try { console.error("upload panel:", await page.locator("#upload").innerText()); } catch {}
  try { console.error("error box:", await page.locator("#error").innerText()); } catch {}
});

await step("the admin listener serves the player with the upload panel", async () => {
  await page.goto(adminUrl, { waitUntil: "load" });
  await page.locator("#upload").waitFor({ state: "visible" });
});

await step("a wrong token is refused with a readable message", async () => {
  await page.fill("#upload-token", "wrong-token-wrong-token");
  await page.setInputFiles("#upload-file", file);
  await page.click("#upload-start");
  await page.waitForFunction(() => /HTTP 401/.test(document.getElementById("upload-status").textContent));
});

await step("picking a file uploads it with progress and shows the asset", async () => {
  await page.fill("#upload-token", token);
  await page.click("#upload-start");
  await page.locator("#upload-play").waitFor({ state: "visible" });
  const status = await page.locator("#upload-status").innerText();
  check(/Uploaded .* piece\(s\), data set \d+/.test(status), `status: ${status}`);
  const stored = await page.evaluate(() => sessionStorage.getItem("beam-edge-admin-token"));
  check(stored && stored.length > 0, "the token is kept in sessionStorage");
});

await step("the uploaded asset plays", async () => {
  await page.click("#upload-play");
  await page.waitForFunction(() => {
    const v = document.getElementById("video");
    return v && !v.error && v.currentTime > 0.5;
  });
  const src = await page.evaluate(() => document.getElementById("video").currentSrc);
  check(/\/asset\//.test(src), `played ${src}`);
});

await step("screenshot of the admin page", async () => {
  fs.mkdirSync(path.dirname(shotPath), { recursive: true });
  await page.screenshot({ path: shotPath });
});

await close();
clearTimeout(hardStop);
console.log("all upload steps passed");
