"""Cutting large polygons into small pieces, as PostGIS ``ST_Subdivide`` does, but in-process.

GEOS via shapely clips a polygon of 190,000 vertices in milliseconds, where a server-side
``ST_Subdivide`` of the whole timezonefinder data set takes minutes; the pieces are the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import shapely

from ipgeo.geo.timezone_polygons import Ring

MAX_DEPTH = 48  # enough halvings for any real polygon; a guard against degenerate input

GeometryArray = npt.NDArray[np.object_]
IndexArray = npt.NDArray[np.int64]


def make_polygon(rings: Sequence[Ring]) -> GeometryArray:
    """Build a valid polygon (repaired when self-intersecting) from an outer ring and holes."""
    polygon = shapely.Polygon(rings[0], list(rings[1:]))
    if not shapely.is_valid(polygon):
        polygon = shapely.make_valid(polygon)
    parts = shapely.get_parts(np.array([polygon], dtype=object))
    result: GeometryArray = parts[shapely.get_type_id(parts) == 3]
    return result


def _halves(pieces: GeometryArray) -> GeometryArray:
    """Cut every piece in two across the longer side of its bounding box."""
    bounds = shapely.bounds(pieces)
    out = np.empty(2 * len(pieces), dtype=object)
    for i, piece in enumerate(pieces):
        xmin, ymin, xmax, ymax = (float(value) for value in bounds[i])
        if xmax - xmin >= ymax - ymin:
            middle = (xmin + xmax) / 2
            out[2 * i] = shapely.clip_by_rect(piece, xmin, ymin, middle, ymax)
            out[2 * i + 1] = shapely.clip_by_rect(piece, middle, ymin, xmax, ymax)
        else:
            middle = (ymin + ymax) / 2
            out[2 * i] = shapely.clip_by_rect(piece, xmin, ymin, xmax, middle)
            out[2 * i + 1] = shapely.clip_by_rect(piece, xmin, middle, xmax, ymax)
    return out


def subdivide(polygons: GeometryArray, max_vertices: int = 256) -> tuple[GeometryArray, IndexArray]:
    """Split polygons into pieces of at most ``max_vertices``; return pieces and owner indexes."""
    pending = polygons
    owners: IndexArray = np.arange(len(polygons), dtype=np.int64)
    done: list[GeometryArray] = []
    done_owners: list[IndexArray] = []
    for depth in range(MAX_DEPTH + 1):
        small = shapely.get_num_coordinates(pending) <= max_vertices
        if depth == MAX_DEPTH:
            small[:] = True
        done.append(pending[small])
        done_owners.append(owners[small])
        big = pending[~small]
        if not len(big):
            break
        halves = _halves(big)
        parts, index = shapely.get_parts(halves, return_index=True)
        keep = (shapely.get_type_id(parts) == 3) & ~shapely.is_empty(parts)
        pending = parts[keep]
        owners = np.repeat(owners[~small], 2)[index][keep]
    return np.concatenate(done), np.concatenate(done_owners)
