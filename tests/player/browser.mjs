// Launching Debian's Chromium for the player's end-to-end scripts: headless,
// a fresh profile, no background networking (this machine's network is
// closed), autoplay allowed. Fails loudly when Chromium is missing.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

/// Returns { context, page, browserLog, close }.
export async function launch(prefix, stepTimeoutMs) {
  if (!fs.existsSync(CHROMIUM)) {
    console.error(`FAIL: no Chromium at ${CHROMIUM} (apt-get install -y chromium)`);
    process.exit(1);
  }
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 760 },
    timeout: stepTimeoutMs,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--autoplay-policy=no-user-gesture-required",
      // A test CA's server key, trusted by its SPKI hash (the https test).
      ...(process.env.TRUST_SPKI ? [`--ignore-certificate-errors-spki-list=${process.env.TRUST_SPKI}`] : []),
    ],
  });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(stepTimeoutMs);
  const browserLog = [];
  page.on("console", (m) => browserLog.push(`console.${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => browserLog.push(`pageerror: ${e.message}`));
  const close = async () => {
    await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  };
  return { context, page, browserLog, close };
}

/// A step runner: prints `ok   name (ms)`, or on failure `FAIL name: why`,
/// what `diagnose()` prints, the last browser log lines, then closes the
/// browser and exits 1.
export function stepper(close, browserLog, diagnose) {
  return async function step(name, fn) {
    const t0 = Date.now();
    try {
      await fn();
      console.log(`ok   ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      console.error(`FAIL ${name}: ${e.message.split("\n")[0]}`);
      try { await diagnose(); } catch {}
      console.error("browser log:\n  " + browserLog.slice(-20).join("\n  "));
      await close();
      process.exit(1);
    }
  };
}

/// Throws `message` unless `cond`.
export function check(cond, message) {
  if (!cond) throw new Error(message);
}
