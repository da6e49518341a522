"""B2 and B3: Flask + ``geoip2`` with the Reader opened once per process.

B2 serves it with gunicorn (``-w 4``, default sync workers); B3 with uWSGI (4 processes)
behind nginx's ``uwsgi_pass``: the careful, default-ish deployment of a small service.
"""

from __future__ import annotations

from typing import Any

import geoip2.database
import geoip2.errors
from flask import Flask, jsonify

from bench.baselines import city_db_path, flat_answer

app = Flask(__name__)
reader = geoip2.database.Reader(str(city_db_path()))


@app.route("/api/v1/lookup/<ip>")
def lookup(ip: str) -> Any:
    """Look ``ip`` up in the shared Reader."""
    try:
        city = reader.city(ip)
    except ValueError:
        return jsonify(error=f"{ip} is not a valid IP address"), 400
    except geoip2.errors.AddressNotFoundError:
        return jsonify(error=f"{ip} is not in the database"), 404
    return jsonify(flat_answer(ip, city))
