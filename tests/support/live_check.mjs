// An open map page hears of a new threat without a reload, in headless Chromium (offline: see
// browser.mjs). Once the page's event stream is connected it creates READY_FILE; the test then
// uploads; this waits for the page to announce the threat and reports, as JSON, when it did
// (`shown_at`, ms since the epoch), what the banner said, and what the browser complained about.
//
// usage: node live_check.mjs URL KEY READY_FILE
import { writeFileSync } from 'node:fs';
import { open } from './browser.mjs';

const [url, key, readyFile] = process.argv.slice(2);
const report = {};
const { browser, page } = await open(report);
try {
  await page.evaluateOnNewDocument((k) => localStorage.setItem('shadowcheck.key', k), key);
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForFunction(() => window.shadowcheck.liveConnected === true, { timeout: 60000 });
  writeFileSync(readyFile, 'ready');
  await page.waitForFunction(() => (window.shadowcheck.live || []).length > 0, { timeout: 60000, polling: 50 });
  const live = await page.evaluate(() => window.shadowcheck.live[0]);
  report.shown_at = live.shown_at;
  report.threat = { identifier: live.identifier, level: live.level };
  report.banner = await page.$eval('#live-banner', (el) => (el.hidden ? '' : el.textContent));
  await page.waitForFunction((id) => (window.shadowcheck.threats || []).some((t) => t.identifier === id),
    { timeout: 15000 }, live.identifier);
  report.listed = true;
} catch (err) {
  report.failure = String(err && err.message ? err.message : err);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report));
