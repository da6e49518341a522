-- PostGIS itself; a no-op where the extension already exists (e.g. the postgis/postgis image).
CREATE EXTENSION IF NOT EXISTS postgis;
