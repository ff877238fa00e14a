// Plays a live HLS master playlist with hls.js in Debian's headless Chromium; prints one JSON
// report on stdout. Used by tests/playback/player.rs and benches/latency.
//
// Usage: node play.mjs MASTER_URL [SECONDS] [MODE]
// MODE: "switch" (default; lowLatencyMode off, forces a switch to the lowest level and back
// to the highest), "ll" (lowLatencyMode on, no forced switch), "ll-sync" (as "ll", and hls.js
// may play up to 1.5x to reach its target latency: maxLiveSyncPlaybackRate) or "plain"
// (lowLatencyMode off, no forced switch).
// The report: { supported, levels: [{height, bitrate}], switches: [level...], stalls, protocols,
// errors: [...], played, latency: {median, max, samples}, requests: {blocking, parts,
// playlists, segments, keys, all, tokened} } where `played` is media seconds played, `stalls` counts
// hls.js BUFFER_STALLED_ERROR events and media `waiting` events after playback began, but for
// those under 250 ms within a second of a level switch or with half a second or more buffered
// ahead (`brief` counts those; `stallLog` lists them all: when, at which level,
// how much was buffered and listed past the playhead, how long; `switchLog` says when each level switch happened), `latency` is what
// hls.js reports (hls.latency, seconds behind the live edge) once a second after the first
// 5 s, and `requests` counts the player's HTTP requests by kind (blocking = with _HLS_msn;
// keys = AES-128 key requests; licences = ClearKey licence requests; tokened = with a token=
// query parameter).
// With CLEARKEY_LICENCE_URL in the environment, hls.js plays with EME (emeEnabled) and W3C
// ClearKey, its licences from that URL; the page is then opened on the master URL's origin
// (EME needs a secure context: 127.0.0.1 is one).
import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const [url, secondsArg, modeArg] = process.argv.slice(2);
const seconds = Number(secondsArg || 20);
const mode = modeArg || 'switch';
const licenceUrl = process.env.CLEARKEY_LICENCE_URL || null;

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
  const requests = { blocking: 0, parts: 0, playlists: 0, segments: 0, keys: 0, licences: 0, all: 0, tokened: 0 };
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith('http')) return;
    requests.all += 1;
    if (/[?&]token=/.test(u)) requests.tokened += 1;
    if (/\/keys\//.test(u)) {
      requests.keys += 1;
    } else if (/\/licence\//.test(u)) {
      requests.licences += 1;
    } else if (/\.m3u8(\?|$)/.test(u)) {
      requests.playlists += 1;
      if (u.includes('_HLS_msn=')) requests.blocking += 1;
    } else if (/\/\d+\.\d+\.m4s(\?|$)/.test(u)) {
      requests.parts += 1;
    } else if (/\/\d+\.m4s(\?|$)/.test(u)) {
      requests.segments += 1;
    }
  });
  if (process.env.PLAYER_DEBUG) page.on('console', (m) => process.stderr.write(m.text() + '\n'));
  if (licenceUrl) await page.goto(new URL(url).origin + '/');
  await page.setContent('<video id="v" muted playsinline></video>');
  await page.addScriptTag({ path: require.resolve('hls.js/dist/hls.min.js') });
  const report = await page.evaluate(async ({ url, seconds, mode, licenceUrl, debug }) => {
    const out = { supported: Hls.isSupported(), levels: [], switches: [], stalls: 0, brief: 0, errors: [], played: 0 };
    if (!out.supported) return out;
    const video = document.getElementById('v');
    const config = { lowLatencyMode: mode.startsWith('ll') };
    if (mode === 'll-sync') config.maxLiveSyncPlaybackRate = 1.5;
    if (licenceUrl) {
      config.debug = debug;
      config.emeEnabled = true;
      // hls.js asks for a rotated key's licence only when it has init data for it: give it
      // the key's own ID in the W3C "keyids" format (the EME Initialization Data Format
      // Registry), from the playlist's KEYID, through its generateRequest hook.
      const b64url = (bytes) => btoa(String.fromCharCode(...bytes))
        .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
      config.drmSystems = {
        'org.w3.clearkey': {
          licenseUrl: licenceUrl,
          generateRequest(initDataType, initData, context) {
            const kid = context.decryptdata && context.decryptdata.keyId;
            if (!kid) return { initDataType, initData };
            const json = JSON.stringify({ kids: [b64url(kid)] });
            return { initDataType: 'keyids', initData: new TextEncoder().encode(json).buffer };
          },
        },
      };
    }
    const hls = new Hls(config);
    let started = false;
    hls.on(Hls.Events.MANIFEST_PARSED, (_, data) => {
      out.levels = data.levels.map((l) => ({ height: l.height, bitrate: l.bitrate }));
      video.play().catch((e) => out.errors.push('play: ' + e));
    });
    // Every time playback paused for want of data after it began: `t` seconds since playback
    // began, the event (`stalled`: hls.js's BUFFER_STALLED_ERROR, playhead stuck; `waiting`: the
    // media element's), the level playing and the one loading, media seconds buffered ahead of
    // the playhead, hls.js's latency, and how long until playback resumed (`lasted`, s).
    let playingAt = null;
    const since = () => (playingAt === null ? 0 : (performance.now() - playingAt) / 1000);
    const round = (x) => Math.round(x * 1000) / 1000;
    const pause = (kind) => {
      const b = video.buffered;
      let ahead = 0;
      for (let i = 0; i < b.length; i++) {
        if (b.start(i) <= video.currentTime + 0.1 && b.end(i) > video.currentTime) ahead = b.end(i) - video.currentTime;
      }
      // `listed`: media seconds the playing level's playlist listed past the playhead (how
      // far the live edge was; near `ahead` = the player had all there was to fetch).
      const details = hls.levels[hls.currentLevel] && hls.levels[hls.currentLevel].details;
      const listed = details && Number.isFinite(details.edge) ? round(details.edge - video.currentTime) : null;
      out.stallLog.push({ t: round(since()), kind, level: hls.currentLevel, loading: hls.loadLevel,
        ahead: round(ahead), listed, latency: hls.latency });
    };
    out.stallLog = [];
    out.switchLog = [];
    hls.on(Hls.Events.LEVEL_SWITCHED, (_, data) => {
      out.switches.push(data.level);
      out.switchLog.push({ t: round(since()), level: data.level });
    });
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (data.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR) pause('stalled');
      else if (data.fatal) out.errors.push(`${data.type}/${data.details}`);
    });
    video.addEventListener('playing', () => {
      if (!started) playingAt = performance.now();
      started = true;
      for (const p of out.stallLog) if (p.lasted === undefined) p.lasted = round(since() - p.t);
    });
    video.addEventListener('waiting', () => { if (started) pause('waiting'); });
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
    // A stall is a pause a viewer sees: hls.js's own stall report, or a `waiting` that lasted
    // BRIEF_S or more, never ended, or came with the buffer running dry away from any level
    // switch. Chromium fires `waiting` for a few milliseconds while it reconfigures its
    // decoder for a level switch (seen up to 50 ms before hls.js reports the switch), with
    // over a second buffered ahead; those are counted in `brief`, not as stalls.
    const BRIEF_S = 0.25;
    const atSwitch = (p) => p.loading !== p.level || out.switchLog.some((w) => Math.abs(p.t - w.t) <= 1);
    const brief = (p) => p.kind === 'waiting' && p.lasted !== undefined && p.lasted < BRIEF_S
      && (atSwitch(p) || p.ahead >= 0.5);
    const seen = (p) => !brief(p);
    out.stalls = out.stallLog.filter(seen).length;
    out.brief = out.stallLog.length - out.stalls;
    return out;
  }, { url, seconds, mode, licenceUrl, debug: !!process.env.PLAYER_DEBUG });
  report.requests = requests;
  console.log(JSON.stringify(report));
} finally {
  await browser.close();
}
