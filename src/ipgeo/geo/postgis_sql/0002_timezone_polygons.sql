-- Land time-zone polygons for the PostGIS time-zone locator (ocean zones are nautical zones
-- computed from the longitude). `ipgeo db load-timezones` fills a copy of this table and swaps
-- it in. Polygons are stored subdivided into pieces of at most a few hundred vertices, so a
-- point-in-polygon test only ever touches small pieces.
-- Where zones overlap (disputed areas), the piece with the lowest rank wins: the zone's vertex
-- count, so the smaller, more specific zone answers, as timezonefinder decides.
CREATE TABLE IF NOT EXISTS timezone_polygons (
    tzid text NOT NULL,
    rank integer NOT NULL DEFAULT 0,
    geom geometry(Polygon, 4326) NOT NULL
);
CREATE INDEX IF NOT EXISTS timezone_polygons_geom_idx
    ON timezone_polygons USING gist (geom);

-- What the current polygons came from: one row, replaced by every load.
CREATE TABLE IF NOT EXISTS timezone_load (
    id           integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    source       text NOT NULL,
    data_version text,
    zones        integer NOT NULL,
    polygons     integer NOT NULL,
    pieces       integer NOT NULL,
    loaded_at    timestamptz NOT NULL DEFAULT now()
);
