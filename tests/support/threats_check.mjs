// Drives the threats panel as a person would, in headless Chromium (offline: see browser.mjs):
// waits for the threat on IDENTIFIER to be listed, clicks it, checks its track is drawn in the
// screenshot, opens its report (as the Report link does, in a new tab) and prints it to PDF,
// then presses "This is mine". Reports, as JSON, what it saw and what the browser complained
// about.
//
// usage: node threats_check.mjs URL KEY IDENTIFIER SCREENSHOT.png REPORT.pdf
import { writeFileSync } from 'node:fs';
import { open, PNG, project, settle } from './browser.mjs';

const [url, key, identifier, screenshotPath, pdfPath] = process.argv.slice(2);
const report = {};
const { browser, page } = await open(report);
let tab = null;
try {
  await page.evaluateOnNewDocument((k) => localStorage.setItem('shadowcheck.key', k), key);
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForFunction((id) => (window.shadowcheck.threats || []).some((t) => t.identifier === id),
    { timeout: 60000 }, identifier);
  const threat = await page.evaluate((id) => window.shadowcheck.threats.find((t) => t.identifier === id), identifier);
  report.listed = { level: threat.level, score: threat.score, summary: threat.summary };
  report.panel_text = await page.$eval('#threats', (el) => el.innerText);
  const item = await page.waitForSelector(`#threat-list li[data-key^="${threat.radio}/${identifier}/"]`);
  const before = await page.evaluate(() => window.shadowcheck.idle);
  await (await item.$('.threat-head')).click();
  await page.waitForFunction(() => window.shadowcheck.track && window.shadowcheck.track.places > 0, { timeout: 30000 });
  await settle(page, before);
  report.track = await page.evaluate(() => window.shadowcheck.track);
  const places = threat.explanation.places.map((p) => [p.longitude, p.latitude]);
  const pixels = await project(page, places);
  const shot = await page.screenshot({ type: 'png' });
  writeFileSync(screenshotPath, shot);
  const png = PNG.sync.read(shot);
  // The track's red (#c62828) near a place.
  const red = ([x, y]) => {
    for (let dy = -6; dy <= 6; dy++) {
      for (let dx = -6; dx <= 6; dx++) {
        const px = x + dx;
        const py = y + dy;
        if (px < 0 || py < 0 || px >= png.width || py >= png.height) continue;
        const i = (png.width * py + px) * 4;
        if (png.data[i] > 150 && png.data[i + 1] < 90 && png.data[i + 2] < 90) return true;
      }
    }
    return false;
  };
  report.places = pixels.map((p) => ({ pixel: p, drawn: red(p) }));
  // The report, in a tab of its own: its words, its places, its attachments, and a PDF.
  const reportUrl = await page.evaluate((el) => el.querySelector('a[href^="/report/"]').href, item);
  tab = await browser.newPage();
  tab.on('pageerror', (e) => report.problems.push(`report page error: ${e.message}`));
  tab.on('console', (m) => {
    if (m.type() === 'error' && !(m.location()?.url || '').startsWith('https://')) report.problems.push(`report console error: ${m.text()}`);
  });
  await tab.goto(reportUrl, { waitUntil: 'load' });
  await tab.waitForFunction(() => window.report && window.report.ready && window.report.geojson && window.report.kml, { timeout: 30000 });
  report.report = await tab.evaluate(() => ({
    errors: window.report.errors,
    places: window.report.places,
    rows: document.querySelectorAll('#places tbody tr').length,
    summary: document.getElementById('summary').textContent,
    geojson: document.getElementById('geojson').href.startsWith('blob:'),
  }));
  report.report.geojson_features = await tab.evaluate(() => window.report.sightings);
  await tab.pdf({ path: pdfPath, format: 'A4', printBackground: true });
  await tab.close();
  // "This is mine": the panel says so once the server has it.
  const mine = await page.evaluateHandle((el) => [...el.querySelectorAll('button')].find((b) => b.textContent === 'This is mine'), item);
  await mine.click();
  await page.waitForFunction(() => document.getElementById('status').textContent === 'Marked as yours.', { timeout: 15000 });
  report.marked_mine = true;
} catch (err) {
  report.failure = String(err && err.message ? err.message : err);
  if (tab) {
    report.report_page = await tab.evaluate(() => ({
      ready: window.report?.ready, geojson: window.report?.geojson, kml: window.report?.kml,
      errors: window.report?.errors, problem: document.getElementById('problem')?.textContent,
    })).catch((e) => String(e));
  }
  try {
    report.status = await page.$eval('#status', (el) => el.textContent);
  } catch (_) {
    // The page itself is gone: the failure says enough.
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report));
