// Plays a live HLS master playlist with hls.js in Debian's headless Chromium; prints one JSON
// report on stdout. Used by tests/it/player.rs and benches/latency.
//
// Usage: node play.mjs MASTER_URL [SECONDS] [MODE]
// MODE: "switch" (default; lowLatencyMode off, forces a switch to the lowest level and back
// to the highest), "ll" (lowLatencyMode on, no forced switch), "ll-sync" (as "ll", and hls.js
// may play up to 1.5x to reach its target latency: maxLiveSyncPlaybackRate) or "plain"
// (lowLatencyMode off, no forced switch).
// The report: { supported, levels: [{height, bitrate}], switches: [level...], stalls, protocols,
// errors: [...], played, latency: {median, max, samples}, requests: {blocking, parts,
// playlists, segments, keys, all, tokened} } where `played` is media seconds played, `stalls` counts
// BUFFER_STALLED_ERROR events and `waiting` events after playback began, `latency` is what
// hls.js reports (hls.latency, seconds behind the live edge) once a second after the first
// 5 s, and `requests` counts the player's HTTP requests by kind (blocking = with _HLS_msn;
// keys = AES-128 key requests; tokened = with a token= query parameter).
import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const [url, secondsArg, modeArg] = process.argv.slice(2);
const seconds = Number(secondsArg || 20);
const mode = modeArg || 'switch';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required',
    // The tests' HTTPS edges have self-signed certificates.
    '--ignore-certificate-errors'],
});
try {
  const page = await browser.newPage();
  const requests = { blocking: 0, parts: 0, playlists: 0, segments: 0, keys: 0, all: 0, tokened: 0 };
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith('http')) return;
    requests.all += 1;
    if (/[?&]token=/.test(u)) requests.tokened += 1;
    if (/\/keys\//.test(u)) {
      requests.keys += 1;
    } else if (/\.m3u8(\?|$)/.test(u)) {
      requests.playlists += 1;
      if (u.includes('_HLS_msn=')) requests.blocking += 1;
    } else if (/\/\d+\.\d+\.m4s(\?|$)/.test(u)) {
      requests.parts += 1;
    } else if (/\/\d+\.m4s(\?|$)/.test(u)) {
      requests.segments += 1;
    }
  });
  await page.setContent('<video id="v" muted playsinline></video>');
  await page.addScriptTag({ path: require.resolve('hls.js/dist/hls.min.js') });
  const report = await page.evaluate(async ({ url, seconds, mode }) => {
    const out = { supported: Hls.isSupported(), levels: [], switches: [], stalls: 0, errors: [], played: 0 };
    if (!out.supported) return out;
    const video = document.getElementById('v');
    const config = { lowLatencyMode: mode.startsWith('ll') };
    if (mode === 'll-sync') config.maxLiveSyncPlaybackRate = 1.5;
    const hls = new Hls(config);
    let started = false;
    hls.on(Hls.Events.MANIFEST_PARSED, (_, data) => {
      out.levels = data.levels.map((l) => ({ height: l.height, bitrate: l.bitrate }));
      video.play().catch((e) => out.errors.push('play: ' + e));
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_, data) => out.switches.push(data.level));
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (data.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR) out.stalls += 1;
      else if (data.fatal) out.errors.push(`${data.type}/${data.details}`);
    });
    video.addEventListener('playing', () => { started = true; });
    video.addEventListener('waiting', () => { if (started) out.stalls += 1; });
    hls.loadSource(url);
    hls.attachMedia(video);
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const deadline = Date.now() + seconds * 1000;
    while (!started && Date.now() < deadline) await sleep(100);
    const start = video.currentTime;
    const startedAt = Date.now();
    const samples = [];
    const sampler = setInterval(() => {
      if (Date.now() - startedAt > 5000 && Number.isFinite(hls.latency)) samples.push(hls.latency);
    }, 1000);
    if (mode === 'switch') {
      // Force a switch to the lowest level and back to the highest.
      const plan = [0, () => hls.levels.length - 1];
      for (const target of plan) {
        await sleep(Math.min(4000, Math.max(0, deadline - Date.now())));
        const level = typeof target === 'function' ? target() : target;
        hls.nextLevel = level;
        const until = Date.now() + 6000;
        while (hls.currentLevel !== level && Date.now() < until && Date.now() < deadline) await sleep(100);
      }
    }
    while (Date.now() < deadline) await sleep(200);
    clearInterval(sampler);
    out.played = video.currentTime - start;
    const sorted = [...samples].sort((a, b) => a - b);
    out.latency = {
      median: sorted.length ? sorted[Math.floor(sorted.length / 2)] : null,
      max: sorted.length ? sorted[sorted.length - 1] : null,
      samples: sorted.length,
    };
    // The HTTP versions the player's requests went over (resource timing).
    out.protocols = {};
    for (const e of performance.getEntriesByType('resource')) {
      const p = e.nextHopProtocol || 'unknown';
      out.protocols[p] = (out.protocols[p] || 0) + 1;
    }
    hls.destroy();
    return out;
  }, { url, seconds, mode });
  report.requests = requests;
  console.log(JSON.stringify(report));
} finally {
  await browser.close();
}
