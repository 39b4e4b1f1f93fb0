// beam-edge player: plays /asset/<id> or /piece/<PieceCID> from this edge with custom
// controls on the native media API, and measures what a viewer feels
// (time to first frame, seek latency, buffer, stalls).
//
// Opening: /?cid=<source>, /#<source> or /#<source>&t=<seconds>, or the form.
// A source is a CID with an optional file name (<cid>/<name>), an edge path
// (/piece/…, /asset/…, /beam/…), or a whole Beam link
// (https://<payer>.filbeam.io/<cid>[/<name>], or …calibration.filbeam.io…),
// which plays through /beam/<network>/<payer>/<cid>[/<name>]: the payer comes
// from the link, so an edge with no payer configured plays it.
// A signed edge link (/piece/…?exp=…&kid=…&sig=…, from `beam-edge sign` or
// /admin/sign) is played exactly as given: its path and query are what the
// signature covers, so neither is rewritten, and copied links keep them.
// Before the source is set, a HEAD request checks the id (as an asset, then
// as a piece), so a bad CID,
// a missing piece or a network failure becomes a readable message (the
// server's one-line reason) instead of an opaque media error.
// Frame stepping assumes 30 fps until requestVideoFrameCallback has measured
// the frame duration at 1x; the measured rate is snapped to a common one.
// Work is event-driven: media events update the stats, and a
// requestAnimationFrame loop moves the seek bar only while playing.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const video = $("video"), player = $("player"), seek = $("seek"), errorBox = $("error"), statusBox = $("status");
  const form = $("open-form"), input = $("cid-input"), linkOut = $("link-out");
  const ui = {
    play: $("play"), prev: $("frame-prev"), next: $("frame-next"), mute: $("mute"), volume: $("volume"),
    rate: $("rate"), copy: $("copy-link"), fullscreen: $("fullscreen"),
  };
  const stats = {
    cid: $("stats-cid"), size: $("stats-size"), type: $("stats-type"), head: $("stats-head"), cache: $("stats-cache"), ttff: $("stats-ttff"),
    seekLast: $("stats-seek-last"), seeks: $("stats-seeks"), buffer: $("stats-buffer"), stalls: $("stats-stalls"),
    fps: $("stats-fps"), frames: $("stats-frames"),
  };
  const ASSUMED_FPS = 30;
  const COMMON_FPS = [23.976, 24, 25, 29.97, 30, 48, 50, 59.94, 60, 120];
  const SEEKS_SHOWN = 5;
  const canFrameCallback = "requestVideoFrameCallback" in HTMLVideoElement.prototype;

  // Everything about the piece being played; replaced on each load.
  let s = null;
  let generation = 0;
  let loadAbort = null;
  let raf = 0;
  let dragging = false;

  function fresh(cid) {
    return {
      cid, gen: ++generation, size: null, type: "", srcSetAt: 0, ttff: null, fps: null, frameDeltas: [],
      lastFrame: null, seekStart: null, seeks: [], stalls: 0, stalledMs: 0, stallStart: null, startAt: 0,
    };
  }

  // ---- formatting ----
  const clock = (t) => {
    if (!Number.isFinite(t)) return "0:00";
    t = Math.max(0, t);
    const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), sec = Math.floor(t % 60);
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(sec).padStart(2, "0");
  };
  const ms = (x) => (x < 1000 ? Math.round(x) + " ms" : (x / 1000).toFixed(2) + " s");
  const bytes = (n) => {
    if (!Number.isFinite(n)) return "n/a";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0) : Math.round(n)) + " " + u[i];
  };
  const duration = () => (Number.isFinite(video.duration) ? video.duration : 0);
  const fps = () => (s && s.fps) || ASSUMED_FPS;

  // ---- messages ----
  function showError(text) { errorBox.textContent = text; }
  function clearError() { errorBox.textContent = ""; }
  let statusTimer = 0;
  function say(text) {
    statusBox.textContent = text;
    clearTimeout(statusTimer);
    statusTimer = setTimeout(() => { statusBox.textContent = ""; }, 4000);
  }

  // ---- opening a piece ----
  function parseLocation() {
    const q = new URLSearchParams(location.search);
    let cid = q.get("cid") || "", t = parseFloat(q.get("t") || "");
    const hash = location.hash.slice(1);
    if (hash) {
      const parts = hash.split("&");
      const first = decodeName(parts[0]);
      if (parts[0].startsWith("cid=")) cid = decodeName(parts[0].slice(4)); else if (first && !parts[0].includes("=")) cid = first;
      for (const p of parts.slice(1).concat(parts[0])) {
        const [k, v] = p.split("=");
        if (k === "t" && v !== undefined) t = parseFloat(v);
        if (k === "cid" && v) cid = decodeURIComponent(v);
      }
    }
    return { cid: cid.trim(), t: Number.isFinite(t) && t >= 0 ? t : 0 };
  }

  // On the admin listener the page is served with the public port, and media
  // comes from the public listener (it sends CORS headers).
  const publicPort = document.body.dataset.publicPort || "";
  const mediaBase = publicPort ? `${location.protocol}//${location.hostname}:${publicPort}` : "";

  // What a typed or linked source names: { key, cid, name, beam: {network, payer} | null,
  // kind: "piece" | "asset" | null (null: try as an asset, then as a piece) }.
  // `key` is the canonical text kept in the page's hash and in copied links.
  const BEAM_LINK = /^https?:\/\/([^./]+)\.(calibration\.)?filbeam\.io(?::\d+)?\/([^/?#]+)(?:\/([^?#]*))?/i;
  const EDGE_PATH = /^(?:https?:\/\/[^/]+)?\/?(piece|asset|beam)\/([^?#]+)(\?[^#]*)?/;
  const NETWORKS = ["mainnet", "calibration"];
  function decodeName(text) {
    try { return decodeURIComponent(text || ""); } catch (e) { return text || ""; }
  }
  function parseSource(text) {
    text = (text || "").trim();
    let cid = "", name = "", beam = null, kind = null, signed = null;
    const link = text.match(BEAM_LINK);
    const edge = !link && text.match(EDGE_PATH);
    if (link) {
      beam = { network: link[2] ? "calibration" : "mainnet", payer: link[1] };
      cid = link[3];
      name = decodeName(link[4]);
    } else if (edge) {
      // A signed link: the exact path and query the edge checks.
      if (edge[3] && new URLSearchParams(edge[3]).has("sig")) signed = { path: `/${edge[1]}/${edge[2]}`, query: edge[3] };
      const parts = edge[2].split("/");
      if (edge[1] === "beam") {
        const network = NETWORKS.includes(parts[0]) ? parts.shift() : "";
        beam = { network, payer: parts.shift() || "" };
        if (parts[0] === "asset") { kind = "asset"; parts.shift(); }
      } else {
        kind = edge[1];
      }
      cid = parts.shift() || "";
      name = decodeName(parts.join("/"));
    } else {
      const slash = text.indexOf("/");
      cid = slash < 0 ? text : text.slice(0, slash);
      name = slash < 0 ? "" : decodeName(text.slice(slash + 1));
    }
    const src = sourceOf(cid, name, beam, kind);
    if (signed) {
      src.signed = signed;
      src.key = signed.path.slice(1) + signed.query;
    }
    return src;
  }
  function sourceOf(cid, name, beam, kind) {
    const tail = cid + (name ? "/" + name : "");
    let key = tail;
    if (beam) key = ["beam", beam.network, beam.payer, kind === "asset" ? "asset" : ""].filter(Boolean).join("/") + "/" + tail;
    else if (kind) key = kind + "/" + tail;
    return { key, cid, name, beam, kind };
  }
  // The edge URLs to try for a source, in order.
  function mediaUrls(src) {
    if (src.signed) return [mediaBase + src.signed.path + src.signed.query];
    const tail = "/" + encodeURIComponent(src.cid) + (src.name ? "/" + encodeURIComponent(src.name) : "");
    const prefix = src.beam
      ? "/beam/" + (src.beam.network ? src.beam.network + "/" : "") + encodeURIComponent(src.beam.payer)
      : "";
    const asset = mediaBase + (src.beam ? prefix + "/asset" : "/asset") + tail;
    const piece = mediaBase + (src.beam ? prefix : "/piece") + tail;
    if (src.kind === "asset") return [asset];
    if (src.kind === "piece") return [piece];
    return [asset, piece];
  }
  // The file name a response announces (RFC 6266: filename* first).
  function dispositionName(header) {
    if (!header) return "";
    const star = header.match(/filename\*=UTF-8''([^;]+)/i);
    if (star) return decodeName(star[1].trim());
    const plain = header.match(/filename="([^"]*)"/i);
    return plain ? plain[1] : "";
  }

  // The server answers errors with a one-line text/plain reason; a HEAD has
  // no body, so the reason is read with a 1-byte GET.
  async function reasonFor(url, signal) {
    try {
      const r = await fetch(url, { headers: { Range: "bytes=0-0" }, signal, cache: "no-store" });
      const text = (await r.text()).split("\n")[0].trim();
      return text.slice(0, 300);
    } catch (e) {
      return "";
    }
  }

  function statusMessage(status, reason) {
    const what = {
      400: "Invalid request", 402: "Payment required", 403: "Forbidden", 404: "Not found", 416: "Range not satisfiable",
      502: "Upstream error", 503: "Edge not ready", 504: "Upstream timed out",
    }[status] || "Error";
    return `${what} (HTTP ${status})${reason ? ": " + reason : ""}`;
  }

  async function open(text, startAt) {
    if (loadAbort) loadAbort.abort();
    loadAbort = new AbortController();
    const signal = loadAbort.signal;
    clearError();
    resetMedia();
    const src = parseSource(text);
    const cid = src.cid;
    s = fresh(src.key);
    s.source = src;
    s.startAt = startAt || 0;
    const gen = s.gen;
    input.value = text.trim();
    stats.cid.textContent = cid.length > 24 ? `${cid.slice(0, 12)}…${cid.slice(-8)}` : cid || "–";
    stats.cid.title = src.key;
    if (!cid) { showError("Enter a PieceCID or a Beam link to play."); return; }
    player.dataset.state = "loading";
    // An id may be an asset (an upload's manifest, /asset/) or a plain piece.
    const urls = mediaUrls(src);
    let url = urls[0];
    const t0 = performance.now();
    let head;
    try {
      head = await fetch(url, { method: "HEAD", signal, cache: "no-store" });
      if ((head.status === 400 || head.status === 404) && urls.length > 1) {
        url = urls[1];
        head = await fetch(url, { method: "HEAD", signal, cache: "no-store" });
      }
    } catch (e) {
      if (signal.aborted) return;
      player.dataset.state = "empty";
      showError(`Network error: could not reach the edge for ${cid} (${e.message || e}).`);
      return;
    }
    if (gen !== s.gen) return;
    stats.head.textContent = `${head.status} in ${ms(performance.now() - t0)}`;
    stats.cache.textContent = head.headers.get("X-Cache") || "n/a";
    if (!head.ok) {
      const reason = await reasonFor(url, signal);
      if (gen !== s.gen) return;
      player.dataset.state = "empty";
      showError(statusMessage(head.status, reason));
      return;
    }
    // The kind that answered, and the name it is served under (an asset
    // without one in the link announces its manifest's), go into copied links.
    const kind = src.signed ? src.kind || "piece" : url === mediaUrls({ ...src, kind: "asset" })[0] ? "asset" : "piece";
    const name = src.name || dispositionName(head.headers.get("Content-Disposition"));
    s.linkKey = src.signed ? src.key : sourceOf(cid, name, src.beam, src.beam || src.kind ? kind : null).key;
    const len = parseInt(head.headers.get("Content-Length") || "", 10);
    s.size = Number.isFinite(len) ? len : null;
    s.type = (head.headers.get("Content-Type") || "").split(";")[0].trim();
    stats.size.textContent = bytes(s.size ?? NaN);
    stats.type.textContent = s.type || "unknown";
    if (s.type && !/^(video|audio)\/|^application\/(octet-stream|ogg)$/.test(s.type)) {
      player.dataset.state = "empty";
      showError(`This piece is ${s.type}, not audio or video: it cannot be played here.`);
      return;
    }
    if (s.type.startsWith("video/") || s.type.startsWith("audio/")) {
      if (video.canPlayType(s.type) === "") showError(`This browser may not play ${s.type}; trying anyway.`);
    }
    player.dataset.state = "ready";
    setControlsEnabled(true);
    // Space on the Load button would load again; the next control is Play.
    if (document.activeElement === $("load")) ui.play.focus();
    s.srcSetAt = performance.now();
    video.src = url;
    watchFrames(gen);
    video.play().catch((e) => {
      // Autoplay refused (no user gesture yet): the first frame still shows; play waits for the user.
      if (e.name === "NotAllowedError" && gen === s.gen) say("Press play to start.");
    });
  }

  function resetMedia() {
    cancelAnimationFrame(raf);
    raf = 0;
    video.pause();
    video.removeAttribute("src");
    video.load();
    linkOut.hidden = true;
    setControlsEnabled(false);
    for (const el of Object.values(stats)) el.textContent = "–";
    drawBuffered();
    drawPosition();
  }

  function setControlsEnabled(on) {
    for (const b of Object.values(ui)) b.disabled = !on;
    seek.setAttribute("aria-disabled", String(!on));
    seek.tabIndex = on ? 0 : -1;
  }

  // ---- frames: first frame and frame rate, from requestVideoFrameCallback ----
  function watchFrames(gen) {
    if (!canFrameCallback) return;
    const onFrame = (now, meta) => {
      if (!s || gen !== s.gen) return;
      if (s.ttff === null) firstFrame();
      const prev = s.lastFrame;
      s.lastFrame = meta;
      if (prev && !video.paused && video.playbackRate === 1 && meta.presentedFrames - prev.presentedFrames === 1) {
        const d = meta.mediaTime - prev.mediaTime;
        if (d > 0.002 && d < 0.2) s.frameDeltas.push(d);
        if (s.frameDeltas.length >= 15) measureFps();
      }
      // Keep listening until the rate is known; afterwards frames cost nothing.
      if (s.fps === null) video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  }

  function measureFps() {
    const d = s.frameDeltas.slice().sort((a, b) => a - b)[s.frameDeltas.length >> 1];
    const raw = 1 / d;
    // 29.97 and 30 differ by 0.1%; media timestamps are exact to microseconds.
    const snap = COMMON_FPS.find((f) => Math.abs(f - raw) / f < 0.0003);
    s.fps = snap || Math.round(raw * 100) / 100;
    stats.fps.textContent = `${s.fps} (measured)`;
  }

  function firstFrame() {
    if (s.ttff !== null || !s.srcSetAt) return;
    s.ttff = performance.now() - s.srcSetAt;
    stats.ttff.textContent = ms(s.ttff);
  }

  // ---- stats ----
  function bufferedAhead() {
    const t = video.currentTime, b = video.buffered;
    for (let i = 0; i < b.length; i++) if (b.start(i) <= t + 0.05 && t <= b.end(i)) return b.end(i) - t;
    return 0;
  }

  function showBuffer() {
    if (!s || !s.srcSetAt) return;
    const ahead = bufferedAhead();
    const rate = s.size && duration() ? s.size / duration() : NaN;
    stats.buffer.textContent = `${ahead.toFixed(1)} s ≈ ${bytes(ahead * rate)}`;
  }

  function showStalls() {
    if (!s) return;
    const ongoing = s.stallStart !== null ? performance.now() - s.stallStart : 0;
    stats.stalls.textContent = `${s.stalls} · ${ms(s.stalledMs + ongoing)}`;
  }

  function showSeeks() {
    if (!s.seeks.length) return;
    stats.seekLast.textContent = ms(s.seeks[s.seeks.length - 1]);
    stats.seeks.textContent = s.seeks.slice(-SEEKS_SHOWN).map((x) => Math.round(x)).join(", ") + " ms";
  }

  function showFrames() {
    if (!video.getVideoPlaybackQuality) return;
    const q = video.getVideoPlaybackQuality();
    stats.frames.textContent = `${q.totalVideoFrames} (${q.droppedVideoFrames} dropped)`;
  }

  function endStall() {
    if (s && s.stallStart !== null) {
      s.stalledMs += performance.now() - s.stallStart;
      s.stallStart = null;
      showStalls();
    }
  }

  // ---- drawing ----
  function drawBuffered() {
    const box = $("seek-buffered"), d = duration(), b = video.buffered;
    const parts = [];
    for (let i = 0; d && i < b.length; i++) {
      parts.push(`<div style="left:${(b.start(i) / d) * 100}%;width:${((b.end(i) - b.start(i)) / d) * 100}%"></div>`);
    }
    box.innerHTML = parts.join("");
  }

  function drawPosition(t) {
    const d = duration();
    if (t === undefined) t = video.currentTime || 0;
    const pct = d ? Math.min(100, (t / d) * 100) : 0;
    $("seek-played").style.width = pct + "%";
    $("seek-thumb").style.left = pct + "%";
    $("time").textContent = `${clock(t)} / ${clock(d)}`;
  }

  function describePosition() {
    const d = duration(), t = video.currentTime || 0;
    seek.setAttribute("aria-valuemax", d.toFixed(1));
    seek.setAttribute("aria-valuenow", t.toFixed(1));
    seek.setAttribute("aria-valuetext", `${clock(t)} of ${clock(d)}`);
  }

  function tick() {
    if (!dragging) drawPosition();
    raf = requestAnimationFrame(tick);
  }

  function showPlaying(playing) {
    ui.play.dataset.on = String(playing);
    ui.play.setAttribute("aria-label", playing ? "Pause" : "Play");
    ui.play.title = (playing ? "Pause" : "Play") + " (space, k)";
  }

  // ---- actions ----
  function togglePlay() {
    if (!video.currentSrc) return;
    if (video.paused || video.ended) video.play().catch((e) => { if (e.name !== "AbortError") showError(`Cannot play: ${e.message}`); });
    else video.pause();
  }

  function seekTo(t) {
    if (!video.currentSrc) return;
    const d = duration();
    video.currentTime = Math.max(0, d ? Math.min(t, d) : t);
    drawPosition(video.currentTime);
  }

  // Lands 1 ms into the frame so that rounding never shows its neighbour.
  function stepFrame(dir) {
    if (!video.currentSrc) return;
    video.pause();
    const f = fps();
    const t = s.lastFrame && Math.abs(s.lastFrame.mediaTime - video.currentTime) < 1 / f ? s.lastFrame.mediaTime : video.currentTime;
    const frame = Math.floor(t * f + 0.01) + dir;
    seekTo(Math.max(0, frame) / f + 0.001);
    say(`Frame ${Math.max(0, frame)} at ${f} fps${s.fps ? "" : " (assumed)"}`);
  }

  function setVolume(v) {
    video.volume = Math.min(1, Math.max(0, v));
    if (video.volume > 0) video.muted = false;
  }

  function toggleFullscreen() {
    if (document.fullscreenElement) document.exitFullscreen();
    else if (player.requestFullscreen) player.requestFullscreen().catch((e) => say(`Fullscreen refused: ${e.message}`));
  }

  function stepRate(dir) {
    const opts = [...ui.rate.options].map((o) => o.value);
    const i = opts.indexOf(String(video.playbackRate));
    const next = opts[Math.min(opts.length - 1, Math.max(0, (i < 0 ? opts.indexOf("1") : i) + dir))];
    video.playbackRate = parseFloat(next);
  }

  async function copyLink() {
    if (!s || !s.cid) return;
    const t = Math.round(video.currentTime * 1000) / 1000;
    const link = `${location.origin}${location.pathname}#${encodeURIComponent(s.linkKey || s.cid)}&t=${t}`;
    linkOut.value = link;
    linkOut.hidden = false;
    try {
      await navigator.clipboard.writeText(link);
      say("Link copied.");
    } catch (e) {
      linkOut.focus();
      linkOut.select();
      say("Copy the selected link (the clipboard is not available here).");
    }
  }

  // ---- media events ----
  const on = (type, fn) => video.addEventListener(type, (e) => { if (s && video.currentSrc) fn(e); });
  on("loadedmetadata", () => {
    if (s.startAt > 0) seekTo(s.startAt);
    describePosition();
    drawPosition();
    showFrames();
    if (video.videoWidth) stats.type.textContent = `${s.type || "unknown"} · ${video.videoWidth}×${video.videoHeight}`;
    stats.fps.textContent = canFrameCallback ? `${ASSUMED_FPS} (assumed, measuring)` : `${ASSUMED_FPS} (assumed)`;
  });
  on("loadeddata", () => { if (!canFrameCallback) firstFrame(); });
  on("playing", () => {
    firstFrame();
    endStall();
    showPlaying(true);
    if (!raf) raf = requestAnimationFrame(tick);
  });
  const stopped = () => {
    showPlaying(false);
    cancelAnimationFrame(raf);
    raf = 0;
    drawPosition();
    describePosition();
    showFrames();
  };
  on("pause", stopped);
  on("ended", stopped);
  on("waiting", () => {
    // Startup and seeks have their own numbers; a stall is a wait during playback.
    if (video.seeking || s.ttff === null || s.stallStart !== null) return;
    s.stalls++;
    s.stallStart = performance.now();
    showStalls();
    cancelAnimationFrame(raf);
    raf = 0;
  });
  on("seeking", () => {
    if (s.seekStart === null) s.seekStart = performance.now();
    describePosition();
  });
  on("seeked", () => {
    if (s.seekStart !== null) {
      s.seeks.push(performance.now() - s.seekStart);
      if (s.seeks.length > 50) s.seeks.shift();
      s.seekStart = null;
      showSeeks();
    }
    drawPosition();
    showBuffer();
  });
  on("timeupdate", () => { describePosition(); showBuffer(); showStalls(); showFrames(); });
  on("progress", () => { drawBuffered(); showBuffer(); });
  on("durationchange", () => { drawBuffered(); drawPosition(); describePosition(); });
  on("volumechange", () => {
    const muted = video.muted || video.volume === 0;
    ui.mute.dataset.on = String(muted);
    ui.mute.setAttribute("aria-label", muted ? "Unmute" : "Mute");
    ui.mute.setAttribute("aria-pressed", String(muted));
    ui.volume.value = video.muted ? 0 : video.volume;
  });
  on("ratechange", () => { ui.rate.value = String(video.playbackRate); say(`Rate ${video.playbackRate}×`); });
  on("error", () => {
    const err = video.error;
    if (!err) return;
    const kind = { 1: "Playback aborted", 2: "Network error while loading the media", 3: "The media could not be decoded", 4: "The media format is not supported" }[err.code] || "Media error";
    showError(`${kind}${err.message ? ": " + err.message : ""}.`);
    showPlaying(false);
  });

  // ---- controls ----
  ui.play.addEventListener("click", togglePlay);
  ui.prev.addEventListener("click", () => stepFrame(-1));
  ui.next.addEventListener("click", () => stepFrame(1));
  ui.mute.addEventListener("click", () => {
    if (video.muted || video.volume === 0) { video.muted = false; if (video.volume === 0) video.volume = 0.5; } else video.muted = true;
  });
  ui.volume.addEventListener("input", () => setVolume(parseFloat(ui.volume.value)));
  ui.rate.addEventListener("change", () => { video.playbackRate = parseFloat(ui.rate.value); });
  ui.copy.addEventListener("click", copyLink);
  ui.fullscreen.addEventListener("click", toggleFullscreen);
  video.addEventListener("click", togglePlay);
  video.addEventListener("dblclick", toggleFullscreen);
  document.addEventListener("fullscreenchange", () => {
    const full = document.fullscreenElement === player;
    ui.fullscreen.setAttribute("aria-pressed", String(full));
    ui.fullscreen.setAttribute("aria-label", full ? "Exit fullscreen" : "Fullscreen");
  });

  // The seek bar: pointer drags preview, release commits one seek.
  const timeAt = (x) => {
    const r = seek.getBoundingClientRect();
    return Math.min(1, Math.max(0, (x - r.left) / r.width)) * duration();
  };
  seek.addEventListener("pointerdown", (e) => {
    if (!video.currentSrc || !duration()) return;
    dragging = true;
    seek.setPointerCapture(e.pointerId);
    drawPosition(timeAt(e.clientX));
  });
  seek.addEventListener("pointermove", (e) => { if (dragging) drawPosition(timeAt(e.clientX)); });
  const release = (e) => {
    if (!dragging) return;
    dragging = false;
    seekTo(timeAt(e.clientX));
  };
  seek.addEventListener("pointerup", release);
  seek.addEventListener("pointercancel", () => { dragging = false; drawPosition(); });
  seek.addEventListener("keydown", (e) => {
    const d = duration();
    const jump = { Home: -Infinity, End: Infinity, PageUp: d / 10, PageDown: -d / 10 }[e.key];
    if (jump === undefined) return;
    e.preventDefault();
    e.stopPropagation();
    seekTo(jump === -Infinity ? 0 : jump === Infinity ? d : video.currentTime + jump);
  });

  // Shortcuts work anywhere but in text fields and menus; a focused button
  // keeps Space/Enter for itself.
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement) return;
    if (t instanceof HTMLButtonElement && (e.key === " " || e.key === "Enter")) return;
    const actions = {
      " ": togglePlay, k: togglePlay, K: togglePlay,
      f: toggleFullscreen, F: toggleFullscreen,
      m: () => { video.muted = !video.muted; }, M: () => { video.muted = !video.muted; },
      ArrowLeft: () => seekTo(video.currentTime - 5), ArrowRight: () => seekTo(video.currentTime + 5),
      ArrowUp: () => setVolume(video.volume + 0.1), ArrowDown: () => setVolume(video.volume - 0.1),
      ",": () => stepFrame(-1), ".": () => stepFrame(1),
      "<": () => stepRate(-1), ">": () => stepRate(1),
    };
    const act = actions[e.key];
    if (!act) return;
    e.preventDefault();
    act();
  });

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const cid = input.value.trim();
    const key = cid && parseSource(cid).key;
    if (key && key !== parseSource(parseLocation().cid).key) history.pushState(null, "", `${location.pathname}#${encodeURIComponent(key)}`);
    open(cid, 0);
  });
  window.addEventListener("hashchange", () => {
    const { cid, t } = parseLocation();
    const key = parseSource(cid).key;
    if (cid && s && (key === s.cid || key === s.linkKey) && video.currentSrc) seekTo(t);
    else if (cid) open(cid, t);
  });

  // Upload panel: only on the admin listener. The file streams from disk
  // (XMLHttpRequest sends a File without reading it into memory), with
  // progress from upload.onprogress.
  if (document.body.dataset.admin === "1") {
    const panel = $("upload");
    const token = $("upload-token");
    const fileInput = $("upload-file");
    const bar = $("upload-progress");
    const status = $("upload-status");
    const result = $("upload-result");
    panel.hidden = false;
    token.value = sessionStorage.getItem("beam-edge-admin-token") || "";
    token.addEventListener("change", () => sessionStorage.setItem("beam-edge-admin-token", token.value));
    $("upload-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const file = fileInput.files && fileInput.files[0];
      if (!file) { status.textContent = "Choose a file first."; return; }
      sessionStorage.setItem("beam-edge-admin-token", token.value);
      const xhr = new XMLHttpRequest();
      const t0 = performance.now();
      xhr.open("POST", "/admin/uploads");
      if (token.value) xhr.setRequestHeader("Authorization", "Bearer " + token.value);
      xhr.setRequestHeader("X-Filename", file.name);
      if (file.type) xhr.setRequestHeader("Content-Type", file.type);
      xhr.upload.onprogress = (ev) => {
        if (!ev.lengthComputable) return;
        bar.value = ev.loaded / ev.total;
        const secs = (performance.now() - t0) / 1000;
        status.textContent = `${bytes(ev.loaded)} of ${bytes(ev.total)}, ${(ev.loaded / 1e6 / Math.max(secs, 0.001)).toFixed(1)} MB/s`;
      };
      xhr.onload = () => {
        let body = {};
        try { body = JSON.parse(xhr.responseText); } catch (err) { body = {}; }
        if (xhr.status !== 201) {
          bar.value = 0;
          status.textContent = `Upload failed (HTTP ${xhr.status}): ${body.error || xhr.statusText}`;
          return;
        }
        bar.value = 1;
        status.textContent = `Uploaded ${bytes(body.size)} in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${body.pieces.length} piece(s), data set ${body.data_set_id}.`;
        result.textContent = "";
        const a = document.createElement("a");
        // The report's path carries the file name (/asset/<id>/<name>).
        a.href = "#" + encodeURIComponent((body.asset_path || `/asset/${body.asset_id}`).slice(1));
        a.id = "upload-play";
        a.textContent = `Play ${body.asset_id}`;
        result.appendChild(a);
      };
      xhr.onerror = () => { status.textContent = "Upload failed: network error."; };
      status.textContent = "Uploading…";
      bar.value = 0;
      xhr.send(file);
    });
  }

  setControlsEnabled(false);
  const first = parseLocation();
  if (first.cid) open(first.cid, first.t);
})();
