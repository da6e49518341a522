"""Parity of answers across the lookup refactor: record what the code answers, compare later.

``record DIR`` asks the current code, in this venv, for the answers to a fixed, seeded set of
questions and stores them in DIR (one gzip file per case, plus ``manifest.json``);
``compare DIR`` asks the same questions again and compares the answers byte for byte with
DIR, after one normalisation: values of ``utc_offset`` (``+05:30``) and ``local_time``
(``2025-06-01T12:00:00+02:00``) are replaced by placeholders in JSON, NDJSON, XML, CSV and
text bodies (only values of exactly that shape; the bulk summary's ``seconds`` too). It
prints a report and exits 1 on any difference.

The questions, for the bundled City database (``city.*``) and with MaxMind's
GeoLite2-ASN-Test database added (``asn.*``, a smaller address set plus the ASN networks):
``GET /api/v1/lookup/<ip>`` for every address; the formats, ``fields``, ``lang`` and
``Accept`` variants for a subset; ``/json``, ``/ip`` and the plain field endpoints; ``POST
/api/v1/batch`` of every address per fields/lang variant; and ``ipgeo bulk`` runs (csv,
ndjson, json, per line and ``--unique``, fields, lang, logs, CIDRs). It uses only interfaces
that survive the refactor: ``Settings.from_env``, ``create_app`` driven through
``werkzeug.test.Client``, and the venv's ``ipgeo bulk`` command.

    .venv/bin/python -m bench.parity record /work/parity-golden    # the old code
    .venv/bin/python -m bench.parity compare /work/parity-golden   # the new code
    .venv/bin/python -m bench.parity compare DIR --only city.batch,bulk-ips-csv
"""
