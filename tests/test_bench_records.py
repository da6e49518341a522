"""``bench.records``' census of a database's IPv4 records agrees with the kernel's walker."""

from __future__ import annotations

import numpy as np

from bench.records import record_mass
from ipgeo.geo.database import bundled_city_db
from ipgeo.geo.generation import Generation


def test_the_census_finds_every_record_and_an_address_of_each() -> None:
    current = Generation(bundled_city_db(), None, 0)
    try:
        pointers, mass, firsts = record_mass(current)
        assert len(pointers) == len(set(pointers.tolist())) > 100_000
        assert (mass > 0).all() and mass.sum() <= 1 << 32
        rng = np.random.default_rng(15)
        for at in rng.choice(len(pointers), 500, replace=False).tolist():
            assert current.find(4, int(firsts[at]))[0] == pointers[at]
        found, _, _ = current.locate_v4(rng.integers(0, 1 << 32, 20_000, dtype=np.int64))
        records = found[found > current.city_walker.node_count]
        assert set(records.tolist()) <= set(pointers.tolist())
    finally:
        current.close()
