// Loads the map page in headless Chromium (offline: see browser.mjs) and reports, as JSON:
// what the browser complained about (console errors, page errors, failed or refused
// requests), what the page says it drew, whether the screenshot shows drawn features at the
// given positions (and background where there is no data), and the map's open strip between
// the two panels (`free`: [left, right] pixels).
//
// usage: node map_check.mjs URL KEY|- POINTS_JSON BACKGROUND_JSON SCREENSHOT.png
//   KEY `-`: no key stored; the page must ask for one, and KEY_TO_TYPE (env) is typed in.
//   ZOOM3 (env, JSON {"center": [lon, lat], "land": [lon, lat], "sea": [lon, lat]}): then
//   jumps to zoom 3 there and reports the colours of the land and sea pixels.
import { writeFileSync } from 'node:fs';
import { drawnFeatures, open, PNG, project as projectOn, settle } from './browser.mjs';

const [url, key, pointsJson, backgroundJson, screenshotPath] = process.argv.slice(2);
const points = JSON.parse(pointsJson);
const background = JSON.parse(backgroundJson);
const report = { asked_for_key: false };
const { browser, page } = await open(report);
try {
  if (key !== '-') {
    await page.evaluateOnNewDocument((k) => localStorage.setItem('shadowcheck.key', k), key);
  }
  await page.goto(url, { waitUntil: 'load' });
  if (key === '-') {
    await page.waitForFunction(() => document.getElementById('key-dialog').open, { timeout: 30000 });
    report.asked_for_key = true;
    // The 401 that made it ask is expected.
    report.problems = report.problems.filter((p) => !p.startsWith('HTTP 401') && !p.includes('401 (Unauthorized)'));
    await page.type('#key-dialog input[name="key"]', process.env.KEY_TO_TYPE);
    await page.click('#key-dialog button[value="save"]');
  }
  await page.waitForFunction(() => window.shadowcheck && window.shadowcheck.rendered > 0, { timeout: 60000 });
  // Let the last tiles settle.
  await page.waitForFunction(() => window.shadowcheck.map.loaded() && window.shadowcheck.map.areTilesLoaded(), { timeout: 30000 });
  await new Promise((r) => setTimeout(r, 500));
  report.status = await page.$eval('#status', (el) => el.textContent);
  report.rendered = await page.evaluate(() => window.shadowcheck.rendered);
  report.free = await page.evaluate(() => [
    document.getElementById('panel').getBoundingClientRect().right,
    document.getElementById('threats').getBoundingClientRect().left,
  ]);
  const project = (list) => projectOn(page, list);
  const at = await project(points);
  const empty = await project(background);
  const shot = await page.screenshot({ type: 'png' });
  writeFileSync(screenshotPath, shot);
  const png = PNG.sync.read(shot);
  // The offline basemap's land colour (the known places are on land).
  const bg = [0xf2, 0xef, 0xe9];
  // Whether any pixel within r of (x, y) is clearly not the background.
  const drawn = ([x, y], r) => {
    for (let dy = -r; dy <= r; dy++) {
      for (let dx = -r; dx <= r; dx++) {
        const px = x + dx;
        const py = y + dy;
        if (px < 0 || py < 0 || px >= png.width || py >= png.height) continue;
        const i = (png.width * py + px) * 4;
        const diff = Math.abs(png.data[i] - bg[0]) + Math.abs(png.data[i + 1] - bg[1]) + Math.abs(png.data[i + 2] - bg[2]);
        if (diff > 60) return true;
      }
    }
    return false;
  };
  report.points = at.map((p) => ({ pixel: p, drawn: drawn(p, 3) }));
  report.background = empty.map((p) => ({ pixel: p, drawn: drawn(p, 3) }));
  report.basemap = await page.evaluate(() => window.shadowcheck.basemap);
  // The timeline: an hour's window ending at the data's last time still shows it all; a replay
  // of a day without data shows nothing.
  await page.select('#tl-span', '3600');
  report.timeline = { hour: await drawnFeatures(page) };
  await page.$eval('#tl-day', (el) => { el.value = '2001-01-01'; });
  // A person can reach the button: nothing (a long threats list) lies over it.
  report.timeline.reachable = await page.$eval('#tl-play', (el) => {
    const r = el.getBoundingClientRect();
    return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) === el;
  });
  await page.click('#tl-play');
  await page.waitForFunction(() => window.shadowcheck.timeline?.playing, { timeout: 10000 });
  report.timeline.replay = await drawnFeatures(page);
  report.timeline.label = await page.$eval('#tl-label', (el) => el.textContent);
  await page.click('#tl-play');
  await page.waitForFunction(() => !window.shadowcheck.timeline?.playing, { timeout: 15000 });
  await page.select('#tl-span', '0');
  if (process.env.ZOOM3) {
    const z3 = JSON.parse(process.env.ZOOM3);
    const before = await page.evaluate(() => window.shadowcheck.idle);
    await page.evaluate((c) => window.shadowcheck.map.jumpTo({ center: c, zoom: 3 }), z3.center);
    await settle(page, before);
    const [land, sea] = await project([z3.land, z3.sea]);
    const shot3 = await page.screenshot({ type: 'png' });
    writeFileSync(screenshotPath.replace(/\.png$/, '-z3.png'), shot3);
    const png3 = PNG.sync.read(shot3);
    const rgb = ([x, y]) => { const i = (png3.width * y + x) * 4; return [png3.data[i], png3.data[i + 1], png3.data[i + 2]]; };
    report.zoom3 = { land: rgb(land), sea: rgb(sea), land_pixel: land, sea_pixel: sea };
  }
} catch (err) {
  report.failure = String(err && err.message ? err.message : err);
  try {
    report.status = await page.$eval('#status', (el) => el.textContent);
    report.page = await page.evaluate(() => ({ ...window.shadowcheck, map: undefined }));
  } catch (_) {
    // The page itself is gone: the failure says enough.
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report));
