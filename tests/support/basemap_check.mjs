// The map page over an operator's PMTiles basemap, in headless Chromium (offline: see
// browser.mjs): which basemap the page chose, how the file was read (range requests), and the
// colours at a sea and a land pixel.
//
// usage: node basemap_check.mjs URL KEY SEA_LON,SEA_LAT LAND_LON,LAND_LAT SCREENSHOT.png
import { writeFileSync } from 'node:fs';
import { open, PNG, project } from './browser.mjs';

const [url, key, sea, land, screenshotPath] = process.argv.slice(2);
const report = { ranges: [] };
const { browser, page } = await open(report);
page.on('response', (r) => {
  if (r.url().includes('/map/basemap.pmtiles')) report.ranges.push(r.status());
});
try {
  await page.evaluateOnNewDocument((k) => localStorage.setItem('shadowcheck.key', k), key);
  await page.goto(url, { waitUntil: 'load' });
  // The basemap's tiles in (not the map's `idle`: with no data of ours it may not come).
  const loaded = () => page.waitForFunction(() => window.shadowcheck.basemap && window.shadowcheck.map
    && window.shadowcheck.map.loaded() && window.shadowcheck.map.areTilesLoaded(), { timeout: 60000 });
  await loaded();
  await new Promise((r) => setTimeout(r, 1500));
  await loaded();
  report.basemap = await page.evaluate(() => window.shadowcheck.basemap);
  const points = [sea, land].map((p) => p.split(',').map(Number));
  const [seaPx, landPx] = await project(page, points);
  const shot = await page.screenshot({ type: 'png' });
  writeFileSync(screenshotPath, shot);
  const png = PNG.sync.read(shot);
  const rgb = ([x, y]) => { const i = (png.width * y + x) * 4; return [png.data[i], png.data[i + 1], png.data[i + 2]]; };
  report.sea = rgb(seaPx);
  report.land = rgb(landPx);
} catch (err) {
  report.failure = String(err && err.message ? err.message : err);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report));
