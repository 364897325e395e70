// The basemap both pages draw under their data: the configured online style when it loads
// within a few seconds, else the offline one built into the binary (land, borders and lakes at
// 1:50m), so a laptop in the field still shows where it is.

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

/** `{ style, online }` for the server's `/map/config.json`. */
export async function basemap(config) {
  const url = config.basemap_style_url;
  if (!url) return { style: offlineStyle(config), online: false };
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return { style: await response.json(), online: true };
  } catch {
    return { style: offlineStyle(config), online: false };
  }
}
