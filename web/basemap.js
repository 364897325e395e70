// The basemap both pages draw under their data: the operator's PMTiles file when one is served
// (a street map with no internet), else the configured online style when it loads within a few
// seconds, else the offline one built into the binary (land, borders and lakes at 1:50m), so a
// laptop in the field still shows where it is.

const WATER = '#a9cde0';

function offlineStyle(config) {
  return {
    version: 8,
    sources: {
      world: {
        type: 'geojson',
        data: `${window.location.origin}${config.offline_basemap}`,
        attribution: 'Natural Earth · lakes © OpenStreetMap contributors',
      },
    },
    layers: [
      { id: 'water', type: 'background', paint: { 'background-color': WATER } },
      { id: 'land', type: 'fill', source: 'world', filter: ['==', ['get', 'kind'], 'land'], paint: { 'fill-color': '#f2efe9' } },
      { id: 'lakes', type: 'fill', source: 'world', filter: ['==', ['get', 'kind'], 'lake'], paint: { 'fill-color': WATER } },
      { id: 'borders', type: 'line', source: 'world', filter: ['==', ['get', 'kind'], 'border'], paint: { 'line-color': '#a39e96', 'line-width': 0.8 } },
    ],
  };
}

/** Loads the vendored PMTiles reader (a classic script: it defines `window.pmtiles`). */
function loadPmtiles() {
  if (window.pmtiles) return Promise.resolve(window.pmtiles);
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = '/map/vendor/pmtiles/pmtiles.js';
    script.onload = () => resolve(window.pmtiles);
    script.onerror = () => reject(new Error('the PMTiles reader did not load'));
    document.head.append(script);
  });
}

const ROAD_WIDTHS = { highway: 3, major_road: 2.2, medium_road: 1.6, minor_road: 1, other: 0.6, path: 0.5 };

/** A style for a PMTiles file: its raster tiles, or vector tiles in the Protomaps schema. */
async function pmtilesStyle(maplibregl, path) {
  const pmtiles = await loadPmtiles();
  const url = `${window.location.origin}${path}`;
  const archive = new pmtiles.PMTiles(url);
  const protocol = new pmtiles.Protocol();
  protocol.add(archive);
  maplibregl.addProtocol('pmtiles', protocol.tile);
  const header = await archive.getHeader();
  const source = `pmtiles://${url}`;
  const attribution = 'Basemap: the operator\'s PMTiles file · © OpenStreetMap contributors';
  // Tile types 2–5 are PNG, JPEG, WebP, AVIF images; 1 is vector (MVT).
  if (header.tileType !== 1) {
    return {
      version: 8,
      sources: { basemap: { type: 'raster', url: source, tileSize: 256, attribution } },
      layers: [
        { id: 'background', type: 'background', paint: { 'background-color': '#dddddd' } },
        { id: 'basemap', type: 'raster', source: 'basemap' },
      ],
    };
  }
  const v = (layer) => ({ source: 'basemap', 'source-layer': layer });
  return {
    version: 8,
    sources: { basemap: { type: 'vector', url: source, attribution } },
    layers: [
      { id: 'background', type: 'background', paint: { 'background-color': WATER } },
      { id: 'earth', type: 'fill', ...v('earth'), paint: { 'fill-color': '#f2efe9' } },
      { id: 'parks', type: 'fill', ...v('landuse'), filter: ['in', ['get', 'kind'], ['literal', ['park', 'forest', 'wood', 'nature_reserve', 'grass', 'garden', 'cemetery']]], paint: { 'fill-color': '#d8e8c8' } },
      { id: 'water', type: 'fill', ...v('water'), paint: { 'fill-color': WATER } },
      { id: 'buildings', type: 'fill', ...v('buildings'), minzoom: 14, paint: { 'fill-color': '#dcd6cc' } },
      {
        id: 'roads', type: 'line', ...v('roads'),
        paint: {
          'line-color': ['match', ['get', 'kind'], 'highway', '#f7c87a', 'major_road', '#ffffff', '#fbfbfb'],
          'line-width': ['*', ['match', ['get', 'kind'], ...Object.entries(ROAD_WIDTHS).flat(), 0.6], ['interpolate', ['exponential', 1.6], ['zoom'], 10, 0.5, 18, 6]],
        },
      },
      { id: 'boundaries', type: 'line', ...v('boundaries'), paint: { 'line-color': '#a39e96', 'line-dasharray': [3, 2] } },
    ],
  };
}

/** `{ style, kind }` (`pmtiles`, `online` or `offline`) for the server's `/map/config.json`. */
export async function basemap(config, maplibregl) {
  if (config.pmtiles) {
    try {
      return { style: await pmtilesStyle(maplibregl, config.pmtiles), kind: 'pmtiles' };
    } catch {
      // An unreadable file: the built-in basemap still shows where things are.
      return { style: offlineStyle(config), kind: 'offline' };
    }
  }
  const url = config.basemap_style_url;
  if (!url) return { style: offlineStyle(config), kind: 'offline' };
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return { style: await response.json(), kind: 'online' };
  } catch {
    return { style: offlineStyle(config), kind: 'offline' };
  }
}
