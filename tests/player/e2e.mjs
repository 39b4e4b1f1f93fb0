// End-to-end check of the beam-edge player in a real headless Chromium.
//
// Usage: node tests/player/e2e.mjs <base-url> <source> <screenshot.png> [<unknown-cid>]
//   <source>       what is typed into the player: the id of a playable piece or
//                  asset the edge can serve (an MP4 with moov at the end), or a
//                  whole Beam link to it (https://<payer>.filbeam.io/<cid>[/<name>]), or a
//                  signed edge link (/piece/<cid>?exp=…&kid=…&sig=…) of an edge that
//                  requires signatures
//   <unknown-cid>  a valid PieceCID the upstream does not have (404 check; skipped if absent)
// Exits 0 when every step passes; otherwise prints the failing step, the
// page state and the browser log, and exits 1. Run by tests/player_e2e.rs.
import fs from "node:fs";
import path from "node:path";
import { check, launch, stepper } from "./browser.mjs";

const [base, source, shotPath, unknownCid] = process.argv.slice(2);
if (!base || !source || !shotPath) {
  console.error("usage: node e2e.mjs <base-url> <source> <screenshot.png> [<unknown-cid>]");
  process.exit(2);
}
// The CID inside the source, and the file name after it (a Beam link's).
const cid = (source.match(/\bbaf[a-z0-9]{20,}/) || [source])[0];
const linkName = decodeURIComponent((source.split(cid)[1] || "").replace(/^\//, "").split(/[?#]/)[0]);
const isBeamLink = /^https?:\/\//.test(source);
const isSigned = /[?&]sig=/.test(source);
// Generous: a loaded 2-core CI machine runs Chromium, ffmpeg and the edge
// at once. A passing run takes about 10 s.
const TOTAL_BUDGET_MS = 150_000;
const STEP_TIMEOUT_MS = 30_000;
const started = Date.now();

const hardStop = setTimeout(() => {
  console.error(`FAIL: the whole run exceeded ${TOTAL_BUDGET_MS / 1000} s`);
  process.exit(1);
}, TOTAL_BUDGET_MS);

const { context, page, browserLog, close } = await launch("beam-edge-e2e-", STEP_TIMEOUT_MS);
// A modest link (3 Mbit/s, 20 ms) instead of loopback speed: the browser
// cannot read the whole clip in one go, so reaching the moov at the end and
// seeking to the middle take real Range requests, as they do on the Internet.
const cdp = await context.newCDPSession(page);
await cdp.send("Network.enable");
await cdp.send("Network.emulateNetworkConditions", {
  offline: false, latency: 20, downloadThroughput: 375_000, uploadThroughput: 375_000,
});
// Every /piece and /asset request the page made, with its Range and (once known) its
// status. Media responses can be reported late (the media stack cancels
// reads it no longer needs), so requests are logged when sent.
const pieceResponses = [];
const byRequest = new Map();
page.on("request", (req) => {
  const url = new URL(req.url());
  if (!/^\/(piece|asset|beam)\//.test(url.pathname)) return;
  const entry = { method: req.method(), path: url.pathname, range: req.headers()["range"] || "", status: null };
  byRequest.set(req, entry);
  pieceResponses.push(entry);
});
page.on("response", (r) => {
  const entry = byRequest.get(r.request());
  if (entry) entry.status = r.status();
});
// The protocol Chromium used for each of those responses (CDP's
// Network.responseReceived: "h2", "http/1.1"), by URL path: over https the
// edge offers h2 by ALPN and the browser must take it.
const protocols = [];
cdp.on("Network.responseReceived", (e) => {
  const url = new URL(e.response.url);
  if (/^\/(piece|asset|beam)\//.test(url.pathname) || url.pathname === "/") {
    protocols.push({ path: url.pathname, protocol: e.response.protocol });
  }
});

const videoState = () =>
  page.evaluate(() => {
    const v = document.getElementById("video");
    return {
      currentTime: v.currentTime, duration: v.duration, paused: v.paused, readyState: v.readyState,
      networkState: v.networkState, error: v.error && `${v.error.code} ${v.error.message}`, src: v.currentSrc,
      frames: v.getVideoPlaybackQuality().totalVideoFrames, width: v.videoWidth,
      errorText: document.getElementById("error").textContent,
    };
  });

const step = stepper(close, browserLog, async () => {
  try { console.error("video:", JSON.stringify(await videoState())); } catch {}
  try { console.error("stats:", await page.locator("#stats").innerText()); } catch {}
  console.error("piece responses:", JSON.stringify(pieceResponses.slice(-10)));
});

const waitFor = (what, fn, arg) =>
  page.waitForFunction(fn, arg, { timeout: STEP_TIMEOUT_MS, polling: 50 }).catch((e) => {
    throw new Error(`timed out waiting for ${what}`);
  });

// Playback moves on by 0.2 s of media time (however long that takes on a
// loaded machine); returns the new currentTime.
async function advancing() {
  const a = (await videoState()).currentTime;
  const moved = await page
    .waitForFunction((a) => {
      const v = document.getElementById("video");
      return !v.paused && v.currentTime > a + 0.2 && v.currentTime;
    }, a, { timeout: STEP_TIMEOUT_MS, polling: 50 })
    .catch(async () => {
      const b = await videoState();
      throw new Error(`playback is not advancing: ${a} -> ${b.currentTime}, paused ${b.paused}`);
    });
  return await moved.jsonValue();
}

const load = async (text) => {
  await page.fill("#cid-input", text);
  await page.click("#load");
};
const NUMBER = /^\d+(\.\d+)? (ms|s)$/;

await step("the page loads with its script and styles", async () => {
  const r = await page.goto(base + "/");
  check(r.status() === 200, `GET / answered ${r.status()}`);
  check((await page.title()).includes("beam-edge"), "unexpected title");
  await page.waitForSelector("#cid-input");
  check(await page.locator("#play").isDisabled(), "controls should wait for a piece (is player.js running?)");
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  check(bg !== "rgba(0, 0, 0, 0)" && bg !== "rgb(255, 255, 255)", `player.css not applied (body ${bg})`);
});

await step("a bad CID shows the server's reason", async () => {
  await load("hello");
  await waitFor("an error message", () => document.getElementById("error").textContent.length > 0);
  const text = await page.locator("#error").innerText();
  // An edge that requires signed links refuses an unsigned one first (403).
  const want = isSigned ? "signed link is required" : "invalid PieceCID";
  check(text.includes(want), `error text: ${JSON.stringify(text)}`);
  check(await page.locator("#cid-input").isEnabled(), "the form must stay usable");
});

if (unknownCid) {
  await step("an unknown CID shows a not-found message", async () => {
    await load(unknownCid);
    await waitFor("a not-found message", () => /not found/i.test(document.getElementById("error").textContent));
  });
}

await step(isBeamLink ? "pasting the Beam link starts playback" : "loading the CID starts playback", async () => {
  await load(source);
  await waitFor("currentTime > 0.5", () => document.getElementById("video").currentTime > 0.5);
  await advancing();
  const v = await videoState();
  check(!v.error, `media error ${v.error}`);
  check(v.errorText === "", `error shown: ${v.errorText}`);
  check(v.frames > 0 && v.width === 640, `no decoded 640-wide frames: ${v.frames} frames, width ${v.width}`);
  if (isBeamLink) {
    // Through the edge, billed to the link's payer; the name stays on the edge.
    const payer = source.match(/^https?:\/\/([^./]+)\./)[1];
    check(new URL(v.src).pathname.startsWith(`/beam/`) && v.src.includes(payer) && v.src.includes(cid), `played ${v.src}`);
  }
});

await step("the stats show a time to first frame", async () => {
  const ttff = await page.locator("#stats-ttff").innerText();
  check(NUMBER.test(ttff), `#stats-ttff = ${JSON.stringify(ttff)}`);
  const buffer = await page.locator("#stats-buffer").innerText();
  check(/^\d+\.\d s ≈ [\d.]+ (B|KiB|MiB)$/.test(buffer), `#stats-buffer = ${JSON.stringify(buffer)}`);
  const cache = await page.locator("#stats-cache").innerText();
  check(cache.length > 0 && cache !== "–", `#stats-cache = ${JSON.stringify(cache)}`);
});

let target = 0;
await step("clicking the middle of the seek bar plays from there", async () => {
  const box = await page.locator("#seek").boundingBox();
  const duration = (await videoState()).duration;
  target = duration / 2;
  await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  // Where the seek landed, read at the moment it finished.
  const landed = await (await waitFor("the seek to finish past the middle", (t) => {
    const v = document.getElementById("video");
    return !v.seeking && v.currentTime > t - 0.5 && v.currentTime;
  }, target)).jsonValue();
  check(Math.abs(landed - target) < 3, `the seek landed at ${landed}, not near ${target}`);
  await advancing();
  await waitFor("the slider to follow", () => {
    const v = document.getElementById("video");
    return Math.abs(Number(document.getElementById("seek").getAttribute("aria-valuenow")) - v.currentTime) < 1;
  });
});

await step("the stats show the seek latency", async () => {
  await waitFor("a seek latency", () => /\d/.test(document.getElementById("stats-seek-last").textContent));
  const last = await page.locator("#stats-seek-last").innerText();
  check(NUMBER.test(last), `#stats-seek-last = ${JSON.stringify(last)}`);
});

await step("the moov at the end and the middle were fetched with Range requests", async () => {
  // Playback already proved these were answered right; here: the browser had to ask.
  // The size, from the path the media element played.
  // (with its query: a signed link's signature is in it)
  const playedUrl = new URL((await videoState()).src);
  const played = playedUrl.pathname + playedUrl.search;
  const head = await context.request.head(`${base}${played}`);
  check(head.ok(), `HEAD ${played} answered ${head.status()}`);
  if (linkName) check((head.headers()["content-disposition"] || "").includes(linkName), `Content-Disposition ${head.headers()["content-disposition"]}`);
  const size = Number(head.headers()["content-length"]);
  const starts = pieceResponses
    .filter((r) => r.method === "GET" && r.path.includes(cid) && /^bytes=\d+-/.test(r.range))
    .map((r) => Number(r.range.slice(6).split("-")[0]) / size);
  check(starts.some((f) => f > 0.9), `no Range request for the moov at the end: ${JSON.stringify(pieceResponses)}`);
  check(starts.some((f) => f > 0.35 && f < 0.65), `no Range request for the middle: ${JSON.stringify(pieceResponses)}`);
  console.log(`     ranges: ${pieceResponses.filter((r) => r.path.includes(cid)).map((r) => `${r.method} ${r.range || "-"} ${r.status ?? "…"}`).join(", ")}`);
  // An id is tried as an asset first; a plain piece's /asset HEAD is a 404.
  const bad = pieceResponses.filter(
    (r) => r.path.includes(cid) && r.status !== null && ![200, 206].includes(r.status) && !(r.method === "HEAD" && r.path.includes("/asset/")),
  );
  check(bad.length === 0, `unexpected statuses: ${JSON.stringify(bad)}`);
  if (base.startsWith("https:")) {
    // Media range requests and the page itself came over HTTP/2.
    const media = protocols.filter((p) => p.path.includes(cid));
    check(media.length > 0, "no piece response seen over CDP");
    const notH2 = protocols.filter((p) => p.protocol !== "h2");
    check(notH2.length === 0, `not negotiated as h2: ${JSON.stringify(notH2)}`);
    console.log(`     protocol: h2 for all ${protocols.length} responses (${media.length} of the piece)`);
  }
});

await step("screenshot of the playing player", async () => {
  await page.waitForTimeout(300);
  fs.mkdirSync(path.dirname(shotPath), { recursive: true });
  await page.screenshot({ path: shotPath });
});

await step("space pauses, k plays", async () => {
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  await page.keyboard.press("Space");
  await waitFor("pause", () => document.getElementById("video").paused);
  await waitFor("the play button to say Play", () => document.getElementById("play").getAttribute("aria-label") === "Play");
  await page.keyboard.press("k");
  await waitFor("play", () => !document.getElementById("video").paused);
  await page.keyboard.press("k");
  await waitFor("pause", () => document.getElementById("video").paused);
});

await step("'.' and ',' step one frame, arrows 5 s, m mutes", async () => {
  const frame = () => page.evaluate(() => Math.floor(document.getElementById("video").currentTime * 30 + 0.01));
  const f0 = await frame();
  await page.keyboard.press(".");
  await waitFor("the next frame", () => !document.getElementById("video").seeking);
  check((await frame()) === f0 + 1, `'.' went from frame ${f0} to ${await frame()}`);
  await page.keyboard.press(",");
  await page.keyboard.press(",");
  await waitFor("the previous frame", () => !document.getElementById("video").seeking);
  check((await frame()) === f0 - 1, `',' twice went from frame ${f0 + 1} to ${await frame()}`);
  const t0 = (await videoState()).currentTime;
  await page.keyboard.press("ArrowRight");
  const t1 = (await videoState()).currentTime;
  check(Math.abs(t1 - t0 - 5) < 0.01, `ArrowRight moved ${t0} -> ${t1}`);
  await page.keyboard.press("m");
  check(await page.evaluate(() => document.getElementById("video").muted), "m did not mute");
  await waitFor("the mute button to show it", () => document.getElementById("mute").getAttribute("aria-pressed") === "true");
});

let link = "";
let linkId = "";
await step("copy-link gives #<source>&t=<seconds>, with the payer and the name", async () => {
  await page.click("#copy-link");
  link = await page.locator("#link-out").inputValue();
  const m = link.match(/#([^&]+)&t=(\d+(\.\d+)?)$/);
  check(m, `link ${link}`);
  linkId = m[1];
  const id = decodeURIComponent(linkId);
  // A plain piece has no name; an asset announces its manifest's; a link keeps its own.
  const parts = id.split(/[/?]/);
  check(parts.includes(cid), `link ${link} does not name ${cid}`);
  if (isSigned) check(id === source.replace(/^\//, ""), `link ${link} does not keep the signed link ${source}`);
  if (linkName) check(id.endsWith("/" + linkName), `link ${link} lost the name ${linkName}`);
  if (isBeamLink) check(id.startsWith("beam/") && id.includes(source.match(/^https?:\/\/([^./]+)\./)[1]), `link ${link} lost the payer`);
  const t = (await videoState()).currentTime;
  check(Math.abs(Number(m[2]) - t) < 0.01, `link time ${m[2]} vs currentTime ${t}`);
});

await step("opening the copied #<source>&t=12 plays from 12 s", async () => {
  await page.goto("about:blank");
  await page.goto(`${base}/#${linkId}&t=12`);
  const landed = await (await waitFor("currentTime >= 12", () => {
    const v = document.getElementById("video");
    return v.currentTime >= 12 && v.currentTime;
  })).jsonValue();
  check(landed < 15, `started at ${landed}, not near 12`);
  await advancing();
});

await close();
clearTimeout(hardStop);
console.log(`all player checks passed in ${((Date.now() - started) / 1000).toFixed(1)} s; screenshot ${shotPath}`);
