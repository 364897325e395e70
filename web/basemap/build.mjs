// Builds world.geojson, the offline basemap embedded in the binary, from npm packages:
//   npm install world-atlas@2.0.2 topojson-client@3.1.0 @geo-maps/earth-lakes-10km@0.6.0
//   node build.mjs node_modules > world.geojson
// Land and borders: Natural Earth 1:50m admin-0 countries (public domain) via world-atlas;
// lakes: geo-maps earth-lakes-10km (from OpenStreetMap, ODbL). Coordinates are rounded to
// 0.001° (~100 m), well below the 1:50m data's own precision.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';

const modules = process.argv[2] || 'node_modules';
const require = createRequire(join(process.cwd(), modules, 'x.js'));
const topojson = require('topojson-client');
const world = JSON.parse(readFileSync(join(modules, 'world-atlas/countries-50m.json'), 'utf8'));
const lakes = JSON.parse(readFileSync(join(modules, '@geo-maps/earth-lakes-10km/map.geo.json'), 'utf8'));

const round = (c) => (typeof c[0] === 'number'
  ? [Math.round(c[0] * 1000) / 1000, Math.round(c[1] * 1000) / 1000]
  : c.map(round));
const feature = (kind, geometry) => ({
  type: 'Feature',
  properties: { kind },
  geometry: { type: geometry.type, coordinates: round(geometry.coordinates) },
});

// Land as one polygon per country: one merged polygon of every continent confused
// MapLibre's tiler (a tile-sized block of land drawn over the Atlantic at zoom 3).
const land = topojson.feature(world, world.objects.countries).features.map((f) => f.geometry);
const borders = topojson.mesh(world, world.objects.countries, (a, b) => a !== b);
// A bare GeometryCollection of (multi)polygons.
const lakeFeatures = lakes.geometries;

process.stdout.write(JSON.stringify({
  type: 'FeatureCollection',
  features: [
    ...land.map((g) => feature('land', g)),
    feature('border', borders),
    ...lakeFeatures.map((g) => feature('lake', g)),
  ],
}));
