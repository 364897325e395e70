// A threat's printable report: what the detector concluded and why, in words and in its own
// figures, where and when the transmitter was with the device (a map and a table), and its
// track as GeoJSON and KML to hand over. Read with the key the map page stored in this browser.
import * as maplibregl from '/map/vendor/maplibre-gl/maplibre-gl.mjs';
import { basemap } from '/map/basemap.js';

const LEVEL_COLOURS = { alert: '#c62828', suspicious: '#ef6c00', watch: '#f9a825', none: '#9e9e9e' };
const report = (window.report = { ready: false, errors: [] });
const $ = (id) => document.getElementById(id);
const key = localStorage.getItem('shadowcheck.key') || '';
const auth = key ? { Authorization: `Bearer ${key}` } : {};
const [, , radio, identifier, device] = window.location.pathname.split('/').map(decodeURIComponent);

function fail(text) {
  $('problem').textContent = text;
  $('problem').hidden = false;
  report.errors.push(text);
}

const when = (iso) => (iso ? new Date(iso).toLocaleString() : '—');
function rows(table, list, cells) {
  const body = $(table).tBodies[0];
  for (const item of list) {
    const row = body.insertRow();
    for (const value of cells(item)) row.insertCell().textContent = value ?? '';
  }
}

/** A download link holding the data fetched with the key (a plain link could not send it). */
async function attach(id, format, filename) {
  const address = radio === 'wifi' ? 'bssid' : 'bt_address';
  if (radio === 'cellular') {
    $(id).replaceWith('(cells have no export by address)');
    return;
  }
  const params = new URLSearchParams({ f: format, [address]: identifier, device_id: device, estimated: 'true' });
  const response = await fetch(`/api/v1/detections?${params}`, { headers: auth });
  if (!response.ok) throw new Error(`${format}: HTTP ${response.status}`);
  const blob = await response.blob();
  $(id).href = URL.createObjectURL(blob);
  $(id).download = filename;
  report[format] = true;
  if (format === 'geojson') report.sightings = JSON.parse(await blob.text()).features.length;
}

$('generated').textContent = new Date().toLocaleString();
$('print').addEventListener('click', () => window.print());
try {
  const path = `/api/v1/threats/${encodeURIComponent(radio)}/${encodeURIComponent(identifier)}/${encodeURIComponent(device)}`;
  const response = await fetch(path, { headers: auth });
  if (response.status === 401) throw new Error('This report needs a read key: open the map at / once and give it your key.');
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    throw new Error(problem.detail || `HTTP ${response.status}`);
  }
  const t = await response.json();
  report.threat = t;
  const e = t.explanation || {};
  document.title = `ShadowCheck threat report: ${t.radio} ${t.identifier}`;
  $('title').textContent = `${t.level === 'none' ? 'No' : t.level[0].toUpperCase() + t.level.slice(1)} warning: ${t.radio} ${t.identifier}`;
  $('transmitter').textContent = `${t.radio} ${t.identifier}`;
  $('device').textContent = t.device_id;
  const level = Object.assign(document.createElement('span'), { className: 'level', textContent: t.level });
  level.style.background = LEVEL_COLOURS[t.level] || LEVEL_COLOURS.none;
  $('level').append(level, ` score ${Math.round(t.score)} of 100`);
  $('together').textContent = `${when(t.together_from)} – ${when(t.together_to)}`;
  $('note').textContent = [t.note, e.feedback && `verdict: ${e.feedback.verdict}`].filter(Boolean).join(' · ') || '—';
  $('summary').textContent = t.summary;
  const places = (e.places || []).slice().sort((a, b) => Date.parse(a.first_seen) - Date.parse(b.first_seen));
  rows('places', places, (p) => [when(p.first_seen), when(p.last_seen), p.latitude.toFixed(5), p.longitude.toFixed(5), p.sightings, p.safe_zone]);
  rows('gates', e.gates || [], (g) => [g.gate, JSON.stringify(g.value), JSON.stringify(g.threshold), g.passed ? 'yes' : 'no']);
  rows('components', [...(e.components || []), ...(e.penalties || [])], (c) => [c.component, c.points, c.max]);
  $('rule').textContent = `Rule ${e.rule_version || '?'}; ${e.places_count ?? places.length} places; scored ${when(t.computed_at)}.`;
  report.places = places.length;

  const config = await fetch('/map/config.json').then((r) => r.json());
  const base = await basemap(config, maplibregl);
  const map = new maplibregl.Map({
    container: 'map',
    style: base.style,
    interactive: false,
    // Kept after drawing, so the map prints.
    canvasContextAttributes: { preserveDrawingBuffer: true },
    attributionControl: { compact: false },
  });
  report.map = map;
  map.on('load', () => {
    const line = places.map((p) => [p.longitude, p.latitude]);
    map.addSource('track', {
      type: 'geojson',
      data: {
        type: 'FeatureCollection',
        features: [
          ...(line.length >= 2 ? [{ type: 'Feature', geometry: { type: 'LineString', coordinates: line }, properties: {} }] : []),
          ...places.map((p) => ({ type: 'Feature', geometry: { type: 'Point', coordinates: [p.longitude, p.latitude] }, properties: { sightings: p.sightings } })),
        ],
      },
    });
    map.addLayer({ id: 'line', type: 'line', source: 'track', filter: ['==', ['geometry-type'], 'LineString'], paint: { 'line-color': '#c62828', 'line-width': 3, 'line-dasharray': [2, 1] } });
    map.addLayer({
      id: 'places', type: 'circle', source: 'track', filter: ['==', ['geometry-type'], 'Point'],
      paint: { 'circle-color': '#c62828', 'circle-stroke-color': '#fff', 'circle-stroke-width': 2, 'circle-radius': ['interpolate', ['linear'], ['get', 'sightings'], 1, 5, 20, 12] },
    });
    if (line.length) {
      const lons = line.map((c) => c[0]);
      const lats = line.map((c) => c[1]);
      map.fitBounds([[Math.min(...lons), Math.min(...lats)], [Math.max(...lons), Math.max(...lats)]], { padding: 40, maxZoom: 16, duration: 0 });
    }
    map.once('idle', () => { report.ready = true; });
  });
  // One after the other: a key runs one export at a time (query.max_exports_per_key).
  await attach('geojson', 'geojson', `track-${t.identifier}.geojson`);
  await attach('kml', 'kml', `track-${t.identifier}.kml`);
} catch (err) {
  fail(String(err.message || err));
  report.ready = true;
}
