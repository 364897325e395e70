// The threats panel: what the detector warns about, in words, with the track of each threat on
// the map and the actions a person takes on it ("this is mine", "false alarm", "watch this",
// a note). Built as text nodes only: names and notes may hold markup.

import { openArea } from '/map/timeline.js';

const LEVEL_COLOURS = { alert: '#c62828', suspicious: '#ef6c00', watch: '#f9a825', none: '#9e9e9e' };
const CLASS_NAMES = {
  apple_find_my: 'Apple Find My tracker', tile: 'Tile tracker', chipolo: 'Chipolo tracker',
  samsung_smarttag: 'Samsung SmartTag', google_find_my: 'Google Find My tracker',
  pebblebee: 'Pebblebee tracker', apple_device: 'Apple device',
};
const RADIO_NAMES = { wifi: 'Wi-Fi device', bluetooth: 'Bluetooth device', ble: 'BLE device', cellular: 'cell' };

/** What kind of thing it is, from its tracker signature or else its radio. */
export function classOf(threat) {
  const signature = (threat.explanation?.components || [])
    .find((c) => c.component === 'tracker_signature')?.inputs?.tracker_class;
  return CLASS_NAMES[signature] || RADIO_NAMES[threat.radio] || threat.radio;
}

function ago(iso) {
  if (!iso) return 'not yet';
  const minutes = Math.round((Date.now() - Date.parse(iso)) / 60000);
  if (minutes < 1) return 'just now';
  if (minutes < 90) return `${minutes} min ago`;
  if (minutes < 48 * 60) return `${Math.round(minutes / 60)} h ago`;
  return new Date(iso).toLocaleDateString();
}

const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
};

export function initThreats({ map, fetchJson, send, authHeaders, page, say }) {
  const list = document.getElementById('threat-list');
  const summary = document.getElementById('threat-summary');
  page.threats = [];
  let selected = null;

  map.addSource('threat-track', { type: 'geojson', data: { type: 'FeatureCollection', features: [] } });
  map.addLayer({
    id: 'threat-line', type: 'line', source: 'threat-track', filter: ['==', ['geometry-type'], 'LineString'],
    paint: { 'line-color': '#c62828', 'line-width': 3, 'line-dasharray': [2, 1] },
  });
  map.addLayer({
    id: 'threat-places', type: 'circle', source: 'threat-track', filter: ['==', ['geometry-type'], 'Point'],
    paint: {
      'circle-color': '#c62828', 'circle-opacity': 0.85, 'circle-stroke-color': '#ffffff', 'circle-stroke-width': 2,
      'circle-radius': ['interpolate', ['linear'], ['coalesce', ['get', 'sightings'], 1], 1, 6, 20, 14],
    },
  });
  map.on('click', 'threat-places', (e) => {
    const p = e.features[0].properties;
    say(`Seen here ${p.sightings} times, ${new Date(p.first_seen).toLocaleString()} – ${new Date(p.last_seen).toLocaleTimeString()}.`);
  });

  /** Draws where and when the threat was with the device, and frames it. */
  async function showTrack(threat) {
    selected = `${threat.radio}/${threat.identifier}/${threat.device_id}`;
    const places = (threat.explanation?.places || [])
      .slice()
      .sort((a, b) => Date.parse(a.first_seen) - Date.parse(b.first_seen));
    let line = places.map((p) => [p.longitude, p.latitude]);
    try {
      const t = await fetchJson(threat.transmitter);
      const fixes = (t.properties.track || [])
        .filter((s) => s.device_id === threat.device_id && s.longitude !== null && s.position_source !== 'estimated');
      if (fixes.length >= 2) line = fixes.map((s) => [s.longitude, s.latitude]);
    } catch (err) {
      say(`The track could not be loaded: ${err.message || err}`, true);
    }
    const features = places.map((p) => ({
      type: 'Feature',
      geometry: { type: 'Point', coordinates: [p.longitude, p.latitude] },
      properties: { sightings: p.sightings, first_seen: p.first_seen, last_seen: p.last_seen },
    }));
    if (line.length >= 2) features.push({ type: 'Feature', geometry: { type: 'LineString', coordinates: line }, properties: {} });
    map.getSource('threat-track').setData({ type: 'FeatureCollection', features });
    page.track = { places: places.length, line: line.length };
    const all = line.length ? line : features.map((f) => f.geometry.coordinates);
    if (all.length) {
      const lons = all.map((c) => c[0]);
      const lats = all.map((c) => c[1]);
      map.fitBounds([[Math.min(...lons), Math.min(...lats)], [Math.max(...lons), Math.max(...lats)]], {
        padding: openArea(40),
        maxZoom: 16,
        duration: 0,
      });
    }
    for (const item of list.children) item.classList.toggle('selected', item.dataset.key === selected);
  }

  async function act(label, request) {
    try {
      await request();
      say(label);
      await refresh();
    } catch (err) {
      say(`${label} failed: ${err.message || err}`, true);
    }
  }

  function item(threat) {
    const key = `${threat.radio}/${threat.identifier}/${threat.device_id}`;
    const level = el('span', { className: 'level', textContent: threat.level });
    level.style.background = LEVEL_COLOURS[threat.level] || LEVEL_COLOURS.none;
    const places = threat.explanation?.places_count ?? 0;
    const head = el('button', { type: 'button', className: 'threat-head', title: 'Show its track on the map' },
      level, ' ', el('strong', { textContent: classOf(threat) }), ' ',
      el('span', { className: 'muted', textContent: `score ${Math.round(threat.score)} · ${places} places · ${ago(threat.together_to)}` }));
    head.addEventListener('click', () => showTrack(threat));
    const id = el('div', { className: 'muted mono', textContent: threat.identifier });
    const words = el('p', { className: 'words', textContent: threat.summary || '' });
    const note = threat.note ? el('p', { className: 'threat-note', textContent: `Note: ${threat.note}` }) : '';
    const pair = `/api/v1/threats/${threat.radio}/${encodeURIComponent(threat.identifier)}/${threat.device_id}/feedback`;
    const notePath = `/api/v1/transmitters/${threat.radio}/${encodeURIComponent(threat.identifier)}/note`;
    const button = (text, title, onClick) => {
      const b = el('button', { type: 'button', textContent: text, title });
      b.addEventListener('click', onClick);
      return b;
    };
    const actions = el('div', { className: 'actions' },
      button('This is mine', 'Put it on the allow-list: never warned about again', () =>
        act('Marked as yours.', () => send('POST', '/api/v1/allowlist', { radio: threat.radio, identifier: threat.identifier, note: 'marked mine on the map' }))),
      button('False alarm', 'Keep this pair below suspicious', () =>
        act('Marked a false alarm.', () => send('PUT', pair, { verdict: 'false_alarm' }))),
      button(threat.watched ? 'Stop watching' : 'Watch this', 'Keep it on this list whatever its level', () =>
        act(threat.watched ? 'No longer watched.' : 'Watching it.', () =>
          send('PUT', notePath, { note: threat.note || null, watched: !threat.watched }))),
      button('Note…', 'A note of your own on this transmitter', () => {
        const text = window.prompt('Your note on this transmitter', threat.note || '');
        if (text === null) return;
        act('Note saved.', () => send('PUT', notePath, { note: text, watched: threat.watched }));
      }),
      el('a', { href: `/report/${threat.radio}/${encodeURIComponent(threat.identifier)}/${threat.device_id}`, target: '_blank', rel: 'noopener', textContent: 'Report' }));
    return el('li', { className: 'threat' }, head, id, words, note, actions);
  }

  async function refresh() {
    try {
      const answer = await fetchJson('/api/v1/threats?level=watch&limit=100');
      // The most serious first, then the highest score.
      const rank = { alert: 0, suspicious: 1, watch: 2, none: 3 };
      page.threats = answer.threats.slice().sort((a, b) =>
        (rank[a.level] ?? 3) - (rank[b.level] ?? 3) || b.score - a.score);
      list.replaceChildren(...page.threats.map((t) => {
        const li = item(t);
        li.dataset.key = `${t.radio}/${t.identifier}/${t.device_id}`;
        li.classList.toggle('selected', li.dataset.key === selected);
        return li;
      }));
      const warned = answer.threats.filter((t) => t.level === 'alert' || t.level === 'suspicious').length;
      summary.textContent = answer.threats.length === 0
        ? 'Nothing is following you.'
        : `${warned} warning${warned === 1 ? '' : 's'}, ${answer.threats.length - warned} watched.`;
    } catch (err) {
      summary.textContent = `Threats could not be loaded: ${err.message || err}`;
    }
  }

  /** A new threat on the open page: a banner, and the list refreshed. */
  function announce(threat) {
    page.live.push({ ...threat, shown_at: Date.now() });
    const banner = document.getElementById('live-banner');
    banner.textContent = `New ${threat.level}: ${threat.summary}`;
    banner.hidden = false;
    refresh();
  }

  /**
   * New threats as server-sent events, read with fetch (EventSource cannot send the key in a
   * header); reconnects after a drop with the last id seen, so nothing is missed.
   */
  async function listen() {
    page.live = [];
    let last = null;
    for (;;) {
      try {
        const headers = authHeaders();
        if (last !== null) headers['Last-Event-ID'] = last;
        const response = await fetch('/api/v1/threats/events', { headers });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        page.liveConnected = true;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const field = (name) => block.split('\n').find((l) => l.startsWith(`${name}:`))?.slice(name.length + 1).trim();
            if (field('event') !== 'threat') continue;
            last = field('id') ?? last;
            announce(JSON.parse(field('data')));
          }
        }
      } catch {
        // Dropped or refused: try again shortly.
      }
      page.liveConnected = false;
      await new Promise((r) => setTimeout(r, 3000));
    }
  }
  listen();

  return { refresh, showTrack };
}
