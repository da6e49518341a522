"""B1, the seed-style app: Flask, and a ``geoip2`` Reader opened on every request.

Run by the benchmark with the Flask development server (``flask --app ... run``), the way
such a project is often started: threaded, no WSGI server, the database file opened and its
metadata read for each lookup.
"""

from __future__ import annotations

from typing import Any

import geoip2.database
import geoip2.errors
from flask import Flask, jsonify

from bench.baselines import city_db_path, flat_answer

app = Flask(__name__)
DB_PATH = str(city_db_path())


@app.route("/api/v1/lookup/<ip>")
def lookup(ip: str) -> Any:
    """Look ``ip`` up in a freshly opened database."""
    try:
        with geoip2.database.Reader(DB_PATH) as reader:
            city = reader.city(ip)
    except ValueError:
        return jsonify(error=f"{ip} is not a valid IP address"), 400
    except geoip2.errors.AddressNotFoundError:
        return jsonify(error=f"{ip} is not in the database"), 404
    return jsonify(flat_answer(ip, city))
