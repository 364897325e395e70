"""Decodes a Mapbox Vector Tile with the third-party `mapbox-vector-tile` package (PyPI) and
prints it as JSON: {layer: {"extent": n, "features": [{"id", "type", "geometry", "properties"}]}}.
Geometry stays in tile coordinates, y down, as the tile holds it."""
import json
import sys

import mapbox_vector_tile

with open(sys.argv[1], "rb") as f:
    data = f.read()
tile = mapbox_vector_tile.decode(data, default_options={"y_coord_down": True})
json.dump(tile, sys.stdout)
