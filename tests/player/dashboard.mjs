// Drives weir's dashboard in Debian's headless Chromium as an operator would: signs in,
// creates an event, publishes to the RTMP URL and key the page shows (ffmpeg), previews it,
// and takes a screenshot. Prints one JSON report on stdout.
//
// Usage: node dashboard.mjs ORIGIN_URL TOKEN FLV_FILE SCREENSHOT_PNG
// The report: { created: {server, key}, live, played, errors: [...], screenshot }
// where `live` says the event's row showed "live", `played` is the preview's currentTime
// (seconds) when it was checked, and `errors` holds console errors and page errors.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';

const [origin, token, flv, screenshot] = process.argv.slice(2);
const report = { created: null, live: false, played: 0, errors: [], screenshot };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required'],
});
let ffmpeg = null;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on('console', (m) => { if (m.type() === 'error') report.errors.push('console: ' + m.text()); });
  page.on('pageerror', (e) => report.errors.push('page: ' + e.message));
  page.on('dialog', (d) => d.dismiss());
  await page.goto(origin + '/admin/');
  await page.fill('#token', token);
  await page.click('#signin-form button');
  await page.waitForSelector('#app:not(.hidden)');
  await page.waitForSelector('#new-ladder option[value="passthrough"]', { state: 'attached' });
  await page.fill('#new-id', 'dash');
  await page.fill('#new-title', 'Dashboard test');
  await page.selectOption('#new-ladder', 'passthrough');
  await page.click('#create-form button');
  await page.waitForSelector('#created:not(.hidden)');
  const server = await page.textContent('#created-server');
  const key = await page.textContent('#created-key');
  report.created = { server, key };

  ffmpeg = spawn('ffmpeg', ['-v', 'error', '-nostdin', '-re', '-stream_loop', '-1', '-i', flv,
    '-c', 'copy', '-f', 'flv', `${server}/${key}`], { stdio: 'ignore' });

  await page.waitForSelector('tr[data-event="dash"] td.live', { timeout: 30000 });
  report.live = true;
  await page.click('tr[data-event="dash"] button:has-text("preview")');
  await page.waitForFunction(() => document.getElementById('preview').currentTime > 2, null, { timeout: 40000 });
  report.played = await page.evaluate(() => document.getElementById('preview').currentTime);
  // The measured ingest bit rate appears (after its first 5 s window), then the picture.
  await page.waitForSelector('tr[data-event="dash"] td:nth-child(4):has-text("kbit/s")', { timeout: 30000 });
  await page.screenshot({ path: screenshot, fullPage: true });
} catch (e) {
  report.errors.push('driver: ' + e.message);
} finally {
  if (ffmpeg) ffmpeg.kill('SIGKILL');
  await browser.close();
}
console.log(JSON.stringify(report));
