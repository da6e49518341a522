"""The record cache under random public IPv4 addresses: how many records, how many misses.

Counts the City database's distinct IPv4 records and the share of the address space each
covers (read from the search tree, nothing decoded) and the records N random addresses are
expected to touch. Then, for each --sizes, a fresh process answers the same random addresses
in batches of 1000 through the batch renderer (``batch_json``, the kernel's own record cache
of that size) and reports the share of lookups that decoded a record, per window of
addresses, the CPU per address and the RSS the cache added. Addresses are drawn with each
record weighted by the addresses it covers, as random public addresses meet them.

    .venv/bin/python -m bench.records                      # 1M addresses, 65,536 and 131,072
    .venv/bin/python -m bench.records --sizes 262144 --addresses 3000000
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import time

import numpy as np

from ipgeo.geo import GeoService
from ipgeo.geo.batch import batch_json
from ipgeo.geo.database import bundled_city_db
from ipgeo.geo.generation import Generation
from ipgeo.geo.tree import IntArray

_WINDOW = 250_000
_BATCH = 1000


def record_mass(current: Generation) -> tuple[IntArray, IntArray, IntArray]:
    """Each IPv4 record's pointer, the IPv4 addresses it covers and its first address."""
    tree = current.city_walker.tree
    node_count = tree.node_count
    start = 0
    if tree.ip_version == 6:  # the IPv4 subtree, ::/96
        for _ in range(96):
            start = tree.child(start, 0)
    nodes = np.array([start], dtype=np.int64)
    prefixes = np.zeros(1, dtype=np.int64)
    found: list[tuple[IntArray, IntArray, IntArray]] = []
    depth = 0
    while nodes.size:
        depth += 1
        zeros, ones = np.zeros(len(nodes), np.int64), np.ones(len(nodes), np.int64)
        children = np.concatenate([tree.children(nodes, zeros), tree.children(nodes, ones)])
        paths = np.concatenate([prefixes << 1, prefixes << 1 | 1])
        record = children > node_count
        size = np.full(int(record.sum()), 1 << (32 - depth), dtype=np.int64)
        found.append((children[record], size, paths[record] << (32 - depth)))
        inside = children < node_count
        nodes, prefixes = children[inside], paths[inside]
    pointers = np.concatenate([part[0] for part in found])
    sizes = np.concatenate([part[1] for part in found])
    firsts = np.concatenate([part[2] for part in found])
    distinct, first, inverse = np.unique(pointers, return_index=True, return_inverse=True)
    mass = np.bincount(inverse, weights=sizes).astype(np.int64)
    return distinct, mass, firsts[first]


def rss_mb() -> float:
    """This process's resident set, MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run(size: int, pointers: IntArray, texts: list[str], drawn: IntArray) -> str:
    """Answer the drawn addresses in batches through a fresh service whose record cache has
    ``size`` entries; misses per window, CPU per address and the RSS the cache added."""
    service = GeoService(record_cache_size=size)
    cache = service.current().records
    before = rss_mb()
    misses = 0
    windows: list[str] = []
    started = time.process_time()
    for at in range(0, len(drawn), _BATCH):
        chosen = drawn[at : at + _BATCH]
        cached = cache._places.get(service.languages, {})
        # one decode per record not cached yet, however often the batch holds it
        misses += sum(1 for pointer in set(pointers[chosen].tolist()) if pointer not in cached)
        batch_json(service, [texts[index] for index in chosen.tolist()], None, None)
        if (at + _BATCH) % _WINDOW == 0:
            windows.append(f"{misses / _WINDOW:.1%}")
            misses = 0
    cpu = (time.process_time() - started) / len(drawn) * 1e6
    return (
        f"| {size:,} | {' '.join(windows)} | {cpu:.1f} | +{rss_mb() - before:.0f} "
        f"({rss_mb():.0f}) |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--addresses", type=int, default=1_000_000)
    parser.add_argument("--sizes", default="65536,131072")
    args = parser.parse_args()

    census = Generation(bundled_city_db(), None, 0)
    pointers, mass, first_addresses = record_mass(census)
    census.close()
    share = mass / mass.sum()
    ranked = np.cumsum(np.sort(share)[::-1])
    print(f"{len(pointers):,} distinct IPv4 City records (bundled file)")
    for top in (1_000, 10_000, 65_536, 131_072, 262_144):
        print(f"- the {top:,} largest cover {ranked[min(top, len(ranked)) - 1]:.1%} of its space")
    for count in (100_000, 1_000_000, 3_000_000):
        touched = float(np.sum(1 - np.exp(-share * count)))
        print(f"- {count:,} random addresses touch ~{touched:,.0f} records")

    rng = np.random.default_rng(2026)
    drawn = rng.choice(len(pointers), size=args.addresses, p=share)
    # an address of each record: the first of its first network
    texts = [str(ipaddress.IPv4Address(number)) for number in first_addresses.tolist()]
    print(f"\n| entries | misses per {_WINDOW:,} lookups | CPU µs/address | RSS MB added (total) |")
    print("|---|---|---|---|")
    for size in (int(text) for text in args.sizes.split(",")):
        child = os.fork()  # each size in a fresh process: its RSS is its own
        if child == 0:
            try:
                print(run(size, pointers, texts, drawn), flush=True)
            finally:
                os._exit(0)
        os.waitpid(child, 0)


if __name__ == "__main__":
    main()
