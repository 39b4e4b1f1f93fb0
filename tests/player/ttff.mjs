// Time to first frame and to the first frame after a seek, in a bare
// <video> (none of the project's code on the page), for benches/ttff.sh.
//
// Usage: node tests/player/ttff.mjs [--seek 0.75] [--timeout-ms 60000] URL...
//   Each URL is played once, in order, each in a fresh Chromium (fresh
//   profile, HTTP cache disabled over CDP, so no connection, cache entry or
//   media state carries over from one play to the next). Playing the same
//   edge URL twice gives a cold then a warm figure for that edge.
// Prints one JSON line per play:
//   {"url":…,"first_ms":…,"seek_ms":…,"duration":…,"seek_to":…,"error":null}
//   first_ms  from setting `src` (muted autoplay) to the first
//             requestVideoFrameCallback
//   seek_ms   from setting `currentTime` to seek × duration, right after the
//             first frame, to the first frame callback whose mediaTime is at
//             or past the target (less one frame: a precise seek presents the
//             frame that covers the target)
// A play that fails or times out prints its error and null figures; the
// exit status is 0 unless the arguments are wrong or Chromium is missing.
import { launch } from "./browser.mjs";

const args = process.argv.slice(2);
let seekFraction = 0.75;
let timeoutMs = 60_000;
const urls = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--seek") seekFraction = Number(args[++i]);
  else if (args[i] === "--timeout-ms") timeoutMs = Number(args[++i]);
  else urls.push(args[i]);
}
if (urls.length === 0 || !(seekFraction > 0 && seekFraction < 1) || !(timeoutMs > 0)) {
  console.error("usage: node ttff.mjs [--seek 0.75] [--timeout-ms 60000] URL...");
  process.exit(2);
}

// Runs in the page: everything is timed with the page's own clock.
async function measure({ src, seekFraction, timeoutMs }) {
  const v = document.createElement("video");
  v.muted = true;
  v.autoplay = true;
  v.playsInline = true;
  v.width = 640;
  document.body.appendChild(v);
  const failed = new Promise((_, reject) => {
    v.addEventListener("error", () =>
      reject(new Error(`media error ${v.error && v.error.code}: ${v.error && v.error.message}`)));
    setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms (readyState ${v.readyState})`)), timeoutMs);
  });
  // The frame callback whose mediaTime satisfies `ok`; resolves with its time.
  const frame = (ok) =>
    new Promise((resolve) => {
      const cb = (now, meta) => (ok(meta.mediaTime) ? resolve(performance.now()) : v.requestVideoFrameCallback(cb));
      v.requestVideoFrameCallback(cb);
    });

  const t0 = performance.now();
  const first = frame(() => true);
  v.src = src;
  const t1 = await Promise.race([first, failed]);
  if (!Number.isFinite(v.duration)) {
    await Promise.race([new Promise((r) => v.addEventListener("durationchange", r, { once: true })), failed]);
  }
  const target = v.duration * seekFraction;
  const frameSlack = 0.1; // one frame at 10 fps: covers the clips' frame rates
  const sought = frame((t) => t >= target - frameSlack);
  const t2 = performance.now();
  v.currentTime = target;
  const t3 = await Promise.race([sought, failed]);
  return { first_ms: t1 - t0, seek_ms: t3 - t2, duration: v.duration, seek_to: target };
}

for (const url of urls) {
  const out = { url, first_ms: null, seek_ms: null, duration: null, seek_to: null, error: null };
  let browser;
  try {
    // One retry for a Chromium that fails to start (seen once in 69 plays on
    // the loaded machine: "Failed to create a ProcessSingleton"); a failed
    // play is never retried.
    browser = await launch("beam-edge-ttff-", timeoutMs).catch(() => launch("beam-edge-ttff-", timeoutMs));
    const { context, page } = browser;
    const cdp = await context.newCDPSession(page);
    await cdp.send("Network.enable");
    await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
    await page.setContent("<!doctype html><title>ttff</title><body></body>");
    Object.assign(out, await page.evaluate(measure, { src: url, seekFraction, timeoutMs }));
    for (const k of ["first_ms", "seek_ms"]) out[k] = Math.round(out[k]);
  } catch (e) {
    out.error = String(e.message || e).split("\n")[0];
  } finally {
    if (browser) await browser.close();
  }
  console.log(JSON.stringify(out));
}
process.exit(0);
