"""B3-floor: the B3 stack (nginx + uWSGI + Flask) with a view that returns a constant.

What Flask behind nginx + uWSGI costs with no lookup at all: the floor under B3's latency.
"""

from __future__ import annotations

from flask import Flask, Response

app = Flask(__name__)

# A representative answer (8.8.8.8 in the bundled database), about 300 bytes.
ANSWER = (
    b'{"ip":"8.8.8.8","network":"8.8.0.0/17","continent":"North America",'
    b'"country":"United States","country_iso":"US","region":null,"city":null,'
    b'"postal_code":null,"latitude":37.751,"longitude":-97.822,"accuracy_radius_km":1000,'
    b'"time_zone":"America/Chicago","source":"constant floor answer, no lookup"}'
)


@app.route("/api/v1/lookup/<ip>")
def lookup(ip: str) -> Response:
    """The same bytes whatever ``ip`` is."""
    return Response(ANSWER, mimetype="application/json")
