// Headless Chromium (Debian `chromium`, driven by npm puppeteer-core) for the page tests,
// offline: every name but the loopback address fails to resolve, so a page that needs the
// internet shows it here. What the browser complains about is collected in `report.problems`;
// requests it tries outside are listed apart (`report.outside`), not as problems.
import { createRequire } from 'node:module';

// The packages live in target/tools (installed by scripts/test), named by TOOLS_DIR.
const require = createRequire(`${process.env.TOOLS_DIR}/node_modules/`);
export const puppeteer = require('puppeteer-core');
export const { PNG } = require('pngjs');

const local = (u) => {
  try {
    return new URL(u).hostname === '127.0.0.1';
  } catch {
    return true;
  }
};

/** A browser and a 1000×700 page whose complaints go into `report`. */
export async function open(report) {
  report.problems = [];
  report.outside = [];
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--window-size=1000,700',
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
  });
  const page = await browser.newPage();
  await page.setViewport({ width: 1000, height: 700 });
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const where = m.location()?.url || '';
    (where && !local(where) ? report.outside : report.problems).push(`console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => report.problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    const why = r.failure()?.errorText;
    // A tile the map cancelled (it moved on) is its choice, not a failure.
    if (why === 'net::ERR_ABORTED' && local(r.url())) return;
    (local(r.url()) ? report.problems : report.outside).push(`request failed: ${r.url()} ${why}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) report.problems.push(`HTTP ${r.status()} ${r.url()}`);
  });
  return { browser, page };
}

/** Lon/lat pairs as pixels on the page's map. */
export const project = (page, list) => page.evaluate((ps) => ps.map(([lon, lat]) => {
  const p = window.shadowcheck.map.project([lon, lat]);
  return [Math.round(p.x), Math.round(p.y)];
}), list);

/** Waits for the map to finish drawing after a change. */
export async function settle(page, idleBefore) {
  await page.waitForFunction((n) => window.shadowcheck.idle > n && window.shadowcheck.map.areTilesLoaded(), { timeout: 30000 }, idleBefore);
  await new Promise((r) => setTimeout(r, 500));
}

/** Once the map's tiles are in after a change: how many of our features it draws. */
export async function drawnFeatures(page) {
  await new Promise((r) => setTimeout(r, 500));
  await page.waitForFunction(() => window.shadowcheck.map.loaded() && window.shadowcheck.map.areTilesLoaded(), { timeout: 30000 });
  await new Promise((r) => setTimeout(r, 300));
  return page.evaluate(() => window.shadowcheck.map.queryRenderedFeatures({ layers: ['points', 'cells'] }).length);
}
