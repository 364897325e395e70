// The built-in map: ShadowCheck's own vector tiles on MapLibre GL JS (vendored), with type,
// suspicion and time filters, details on click, and a read key kept in this browser only.
import * as maplibregl from '/map/vendor/maplibre-gl/maplibre-gl.mjs';
import { basemap } from '/map/basemap.js';
import { initThreats } from '/map/threats.js';
import { initTimeline, openArea } from '/map/timeline.js';

const COLOURS = { wifi: '#1f8cd9', bluetooth: '#8e5ab4', ble: '#e8a02f', cellular: '#d63c3c' };
const KEY_STORE = 'shadowcheck.key';
// For the tests and the curious: what the page has drawn and any errors it met.
const page = (window.shadowcheck = { idle: 0, rendered: 0, errors: [] });

const form = document.getElementById('filters');
const status = document.getElementById('status');
const dialog = document.getElementById('key-dialog');

function say(text, isError = false) {
  status.textContent = text;
  status.classList.toggle('error', isError);
  if (isError) page.errors.push(text);
}

const storedKey = () => localStorage.getItem(KEY_STORE) || '';
const authHeaders = () => (storedKey() ? { Authorization: `Bearer ${storedKey()}` } : {});
const sameOrigin = (url) => {
  try {
    return new URL(url, window.location.href).origin === window.location.origin;
  } catch {
    return false;
  }
};

/** Asks for a key; resolves once one is stored (or the dialog is cancelled). */
function askForKey(message) {
  document.getElementById('key-error').textContent = message || '';
  const input = dialog.querySelector('input[name="key"]');
  input.value = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      if (dialog.returnValue === 'save' && input.value.trim()) {
        localStorage.setItem(KEY_STORE, input.value.trim());
      }
      resolve();
    }, { once: true });
    dialog.showModal();
  });
}

let timeline = null;

/** The layer shown and the tile query of the current filters. */
function selection() {
  const data = new FormData(form);
  const layer = data.get('layer') === 'transmitters' ? 'transmitters' : 'detections';
  const params = new URLSearchParams();
  const types = data.getAll('signal_type');
  if (types.length > 0 && types.length < 4) params.set('signal_type', types.join(','));
  if (data.get('suspicious')) params.set('is_suspicious', 'true');
  const range = data.get('range');
  document.getElementById('custom-range').hidden = range !== 'custom';
  const span = timeline && timeline.window();
  if (span) {
    // The timeline's window, when it is on, is the time filter.
    params.set('start', new Date(span.start).toISOString());
    params.set('end', new Date(span.end).toISOString());
  } else if (range === 'custom') {
    const start = data.get('start');
    const end = data.get('end');
    if (start) params.set('start', new Date(start).toISOString());
    if (end) params.set('end', new Date(end).toISOString());
  } else if (range !== 'all') {
    params.set('start', new Date(Date.now() - Number(range) * 1000).toISOString());
  }
  return { layer, query: params.toString(), hidden: types.length === 0 };
}

async function fetchJson(path) {
  const response = await fetch(path, { headers: authHeaders() });
  if (response.status === 401) {
    await askForKey(storedKey() ? 'That key was refused.' : '');
    return fetchJson(path);
  }
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

/** A write (an operator's action); the answer's problem detail when it is refused. */
async function send(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { ...authHeaders(), 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    await askForKey(storedKey() ? 'That key was refused.' : '');
    return send(method, path, body);
  }
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    throw new Error(problem.detail || `HTTP ${response.status}`);
  }
  return response.status === 204 ? null : response.json();
}

// Read before the map writes its own position into the address.
const linkedView = Boolean(window.location.hash);
const config = await fetch('/map/config.json').then((r) => r.json());
const base = await basemap(config, maplibregl);
page.basemap = base.kind;
if (base.kind === 'offline') {
  document.getElementById('basemap-note').textContent = config.basemap_style_url
    ? 'Offline basemap: the online map could not be loaded.'
    : 'Offline basemap.';
}

const map = new maplibregl.Map({
  container: 'map',
  style: base.style,
  center: [0, 20],
  zoom: 1.5,
  hash: true,
  // The key goes to this server only, never to a basemap's.
  // The key goes only to this very origin: compared as parsed origins, since a prefix test
  // also matched http://host:5000.evil.example/.
  transformRequest: (url) =>
    sameOrigin(url) ? { url, headers: authHeaders() } : { url },
});
page.map = map;
map.addControl(new maplibregl.NavigationControl(), 'top-right');
map.addControl(new maplibregl.ScaleControl(), 'bottom-right');

const colour = ['match', ['get', 'signal_type'],
  'wifi', COLOURS.wifi, 'bluetooth', COLOURS.bluetooth, 'ble', COLOURS.ble, 'cellular', COLOURS.cellular,
  '#777777'];
const isCell = ['==', ['get', 'cluster'], true];
const suspicious = ['any', ['to-boolean', ['get', 'is_suspicious']], ['>', ['coalesce', ['get', 'suspicious'], 0], 0],
  ['all', ['has', 'level'], ['!=', ['get', 'level'], 'none']]];

let shown = null;

function show({ layer, query, hidden }) {
  const tiles = [`${window.location.origin}/tiles/${layer}/{z}/{x}/{y}.pbf${query ? `?${query}` : ''}`];
  if (shown && shown.layer === layer) {
    map.getSource('shadowcheck').setTiles(tiles);
  } else {
    for (const id of ['cells', 'points']) if (map.getLayer(id)) map.removeLayer(id);
    if (map.getSource('shadowcheck')) map.removeSource('shadowcheck');
    map.addSource('shadowcheck', { type: 'vector', tiles, minzoom: 0, maxzoom: 20, attribution: 'ShadowCheck' });
    map.addLayer({
      id: 'cells', type: 'circle', source: 'shadowcheck', 'source-layer': layer, filter: isCell,
      paint: {
        'circle-color': colour,
        'circle-opacity': 0.7,
        'circle-radius': ['interpolate', ['linear'], ['ln', ['max', ['get', 'count'], 1]], 0, 5, 12, 24],
        'circle-stroke-color': ['case', suspicious, '#000000', '#ffffff'],
        'circle-stroke-width': ['case', suspicious, 2, 1],
      },
    });
    map.addLayer({
      id: 'points', type: 'circle', source: 'shadowcheck', 'source-layer': layer, filter: ['!', isCell],
      paint: {
        'circle-color': colour,
        'circle-radius': ['interpolate', ['linear'], ['zoom'], 8, 3, 16, 7],
        'circle-stroke-color': ['case', suspicious, '#000000', '#ffffff'],
        'circle-stroke-width': ['case', suspicious, 2, 1],
      },
    });
  }
  for (const id of ['cells', 'points']) map.setLayoutProperty(id, 'visibility', hidden ? 'none' : 'visible');
  shown = { layer, query };
}

/** A table of a feature's properties, built as text (captured names may hold markup). */
function details(feature) {
  const box = document.createElement('div');
  const p = feature.properties;
  const title = document.createElement('p');
  title.className = 'popup-title';
  title.textContent = p.cluster
    ? `${p.count} ${shown.layer} here`
    : `${p.signal_type} ${p.name || p.identifier || ''}`.trim();
  box.append(title);
  const table = document.createElement('table');
  table.className = 'details';
  for (const [name, value] of Object.entries(p)) {
    if (name === 'cluster' || value === null || value === undefined || value === '') continue;
    const row = table.insertRow();
    const th = document.createElement('th');
    th.textContent = name;
    row.append(th);
    row.insertCell().textContent = String(value);
  }
  box.append(table);
  if (p.cluster) {
    const zoom = document.createElement('button');
    zoom.type = 'button';
    zoom.textContent = 'Zoom in';
    zoom.addEventListener('click', () =>
      map.easeTo({ center: feature.geometry.coordinates, zoom: Math.min(map.getZoom() + 3, 20) }));
    box.append(zoom);
  }
  return box;
}

for (const id of ['cells', 'points']) {
  map.on('click', id, (e) => {
    const feature = e.features[0];
    new maplibregl.Popup({ maxWidth: '340px' })
      .setLngLat(feature.geometry.coordinates)
      .setDOMContent(details(feature))
      .addTo(map);
  });
  map.on('mouseenter', id, () => { map.getCanvas().style.cursor = 'pointer'; });
  map.on('mouseleave', id, () => { map.getCanvas().style.cursor = ''; });
}

map.on('error', async (e) => {
  // A basemap tile that does not arrive leaves a gap; it is not this server's data failing.
  if (e.sourceId && e.sourceId !== 'shadowcheck') return;
  const statusCode = e.error && e.error.status;
  if (statusCode === 401) {
    await askForKey(storedKey() ? 'That key was refused.' : '');
    show(selection());
    return;
  }
  say(`Could not load map data: ${e.error ? e.error.message : 'unknown error'}`, true);
});

map.on('idle', () => {
  if (!map.getLayer('points')) return;
  if (map.getLayoutProperty('points', 'visibility') === 'none') {
    page.rendered = 0;
    page.idle += 1;
    say('No signal type selected.');
    return;
  }
  const points = map.queryRenderedFeatures({ layers: ['points'] }).length;
  const cells = map.queryRenderedFeatures({ layers: ['cells'] });
  const inCells = cells.reduce((sum, f) => sum + (f.properties.count || 0), 0);
  page.rendered = points + cells.length;
  page.idle += 1;
  say(page.rendered === 0
    ? 'Nothing here for these filters.'
    : `${points} ${shown.layer} and ${cells.length} clusters (${inCells}) in view.`);
});

form.addEventListener('change', () => show(selection()));
document.getElementById('change-key').addEventListener('click', async () => {
  await askForKey('');
  show(selection());
});

map.on('load', async () => {
  try {
    // Checks the key (asking for one if needed) and finds the data.
    const tilejson = await fetchJson('/tiles/detections.json');
    show(selection());
    page.panel = initThreats({ map, fetchJson, send, authHeaders, page, say });
    // The data's time extent, for the timeline.
    const collection = await fetchJson('/ogc/collections/detections');
    const [[from, to]] = collection.extent.temporal.interval;
    // The extent is given to the second: the last second is included.
    const extent = [Date.parse(from || new Date()), Date.parse(to || new Date()) + 1000];
    timeline = initTimeline({
      extent,
      onChange: () => show(selection()),
      // Drawn, or at most 3 s (a step whose tiles are all empty may not repaint).
      idle: () => new Promise((resolve) => {
        map.once('idle', resolve);
        setTimeout(resolve, 3000);
      }),
      page,
    });
    await page.panel.refresh();
    const [w, s, e, n] = tilejson.bounds;
    const world = w <= -180 && e >= 180;
    if (!linkedView && !world) {
      map.fitBounds([[w, s], [e, n]], {
        padding: openArea(30),
        maxZoom: 15,
        duration: 0,
      });
    }
  } catch (err) {
    say(String(err.message || err), true);
  }
});
