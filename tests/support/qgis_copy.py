"""Opens an OGC API - Features collection in QGIS (its OAPIF provider, default settings; the API
key as the basic-auth password) and reads every feature, as "Export > Save Features As" does.
Prints JSON: {"valid", "count", "distinct": features with distinct natural keys (time, type,
device and transmitter), "fields", "error"}.
Run with Debian's python3 (python3-qgis), QT_QPA_PLATFORM=offscreen.
usage: qgis_copy.py BASE_URL COLLECTION KEY [BBOX]"""
import json
import os
import sys

from qgis.core import QgsApplication, QgsFeatureRequest, QgsRectangle, QgsVectorLayer

base, collection, key = sys.argv[1:4]
app = QgsApplication([], False)
app.initQgis()
uri = f"url='{base}' typename='{collection}' username='qgis' password='{key}'"
layer = QgsVectorLayer(uri, collection, "OAPIF")
out = {"valid": layer.isValid(), "count": 0, "distinct": 0, "fields": [], "error": ""}
NATURAL_KEY = ["detected_at", "signal_type", "device_id", "bssid", "bt_address", "mcc", "mnc", "lac", "cell_id"]
if layer.isValid():
    out["fields"] = [f.name() for f in layer.fields()]
    request = QgsFeatureRequest()
    if len(sys.argv) > 4:
        request.setFilterRect(QgsRectangle(*map(float, sys.argv[4].split(","))))
    seen = set()
    for feature in layer.getFeatures(request):
        out["count"] += 1
        seen.add(tuple(str(feature.attribute(name)) for name in NATURAL_KEY))
    out["distinct"] = len(seen)
else:
    out["error"] = layer.error().summary() if layer.error() else "invalid layer"
json.dump(out, sys.stdout)
sys.stdout.flush()
# Tearing QGIS down from Python can crash at exit; the answer is already out.
os._exit(0)
