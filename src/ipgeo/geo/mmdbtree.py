"""Vectorised walks of a MaxMind DB search tree: many addresses → record pointers at once.

Decoding a City record costs more than the whole tree walk, and most addresses share records,
so the bulk engine, the batch endpoint and the quick single lookup first find each address's
*record pointer* and prefix length (for a whole batch with numpy; the tree layout is fixed by
the MaxMind DB spec), then decode each distinct record only once through the regular reader.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


class SearchTree:
    """The search tree of one ``.mmdb`` file, memory-mapped read-only."""

    def __init__(self, path: Path, node_count: int, record_size: int, ip_version: int) -> None:
        self.node_count = node_count
        self.record_size = record_size
        self.ip_version = ip_version
        if self.record_size not in (24, 28, 32):
            raise ValueError(f"unsupported record size {self.record_size}")
        tree_bytes = self.record_size * 2 // 8 * self.node_count
        with path.open("rb") as handle:
            self.stat = os.fstat(handle.fileno())  # of the file mapped, whatever replaces it
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        if len(self._map) < tree_bytes:
            raise ValueError("the file is shorter than its search tree")
        # Every 4 bytes of the file read as one big-endian integer, at any byte offset (an
        # overlapping strided view): one gather per level of the walk reads a record.
        self._words: npt.NDArray[np.uint32] = np.ndarray(
            (len(self._map) - 3,), dtype=">u4", buffer=self._map, strides=(1,)
        )
        self._ipv4_start, self._ipv4_depth = self._find_ipv4_start()

    def _find_ipv4_start(self) -> tuple[int, int]:
        if self.ip_version == 4:
            return 0, 0
        node = 0
        depth = 0
        while depth < 96 and node < self.node_count:
            node = int(self._records(np.array([node]), np.array([0]))[0])
            depth += 1
        return node, depth

    def _records(self, nodes: IntArray, bits: npt.NDArray[np.integer]) -> IntArray:
        """The left (bit 0) or right (bit 1) record of each node."""
        words = self._words
        if self.record_size == 24:
            # 3 bytes at node * 6 + bit * 3: the top 24 bits of the word there
            result: IntArray = (words[nodes * 6 + bits * 3] >> 8).astype(np.int64)
        elif self.record_size == 28:
            # left: bytes 0-2, high nibble of byte 3 on top; right: low nibble of byte 3, 4-6
            word = words[nodes * 7 + bits * 3].astype(np.int64)
            left = word >> 8 | (word & 0xF0) << 20
            result = np.where(bits == 1, word & 0x0FFFFFFF, left)
        else:
            result = words[nodes * 8 + bits * 4].astype(np.int64)
        return result

    def _walk(
        self, words: list[npt.NDArray[np.uint64]], width: int, start: int
    ) -> tuple[IntArray, IntArray]:
        count = len(words[0])
        pointers = np.full(count, self.node_count, dtype=np.int64)
        prefixes = np.zeros(count, dtype=np.int64)
        if start >= self.node_count:
            pointers[:] = start
            return pointers, prefixes
        # the bits of every address, one row per depth
        shifts = np.arange(63, 63 - min(width, 64), -1, dtype=np.uint64)[:, None]
        bits_by_depth = np.concatenate(
            [((word[None, :] >> shifts) & np.uint64(1)).astype(np.uint8) for word in words]
        )
        index = np.arange(count)
        nodes = np.full(count, start, dtype=np.int64)
        for depth in range(width):
            nodes = self._records(nodes, bits_by_depth[depth, index])
            done = nodes >= self.node_count
            if done.any():
                finished = index[done]
                pointers[finished] = nodes[done]
                prefixes[finished] = depth + 1
                keep = ~done
                index = index[keep]
                if not index.size:
                    break
                nodes = nodes[keep]
        return pointers, prefixes

    def lookup_v4(self, addresses: list[int]) -> tuple[list[int], list[int]]:
        """Record pointers (``node_count`` = no record) and prefix lengths of IPv4 addresses."""
        pointers, prefixes = self.walk_v4(np.array(addresses, dtype=np.uint64))
        return pointers.tolist(), prefixes.tolist()

    def walk_v4(self, numbers: npt.NDArray[np.integer]) -> tuple[IntArray, IntArray]:
        """``lookup_v4`` for an array of IPv4 addresses as integers, answered as arrays."""
        words = [numbers.astype(np.uint64) << np.uint64(32)]
        return self._walk(words, 32, self._ipv4_start)

    def lookup_v6(self, addresses: list[int]) -> tuple[list[int], list[int]]:
        """Record pointers and prefix lengths of IPv6 addresses (IPv6 trees only)."""
        if self.ip_version == 4:
            return [self.node_count] * len(addresses), [0] * len(addresses)
        mask = (1 << 64) - 1
        high = np.array([value >> 64 for value in addresses], dtype=np.uint64)
        low = np.array([value & mask for value in addresses], dtype=np.uint64)
        pointers, prefixes = self._walk([high, low], 128, 0)
        return pointers.tolist(), prefixes.tolist()

    def child(self, node: int, bit: int) -> int:
        """The left (bit 0) or right (bit 1) record of one node, read without numpy."""
        tree = self._map
        if self.record_size == 24:
            base = node * 6 + bit * 3
            return int.from_bytes(tree[base : base + 3], "big")
        if self.record_size == 28:
            base = node * 7
            middle = tree[base + 3]
            if bit:
                return (middle & 0x0F) << 24 | int.from_bytes(tree[base + 4 : base + 7], "big")
            return (middle & 0xF0) << 20 | int.from_bytes(tree[base : base + 3], "big")
        base = node * 8 + bit * 4
        return int.from_bytes(tree[base : base + 4], "big")

    def has_record(self, pointer: int) -> bool:
        """True when ``pointer`` points into the data section."""
        return pointer > self.node_count

    def close(self) -> None:
        """Release the mapping."""
        del self._words
        self._map.close()


def _descend(
    tree: SearchTree, nodes: IntArray, depths: IntArray, numbers: IntArray, first: int, last: int
) -> tuple[IntArray, IntArray]:
    """Follow bits ``first`` … ``last - 1`` (from the top of 32) of ``numbers`` from ``nodes``.

    Returns the node or record pointer reached and the depth of each (``last`` for walks still
    inside the tree; those that met a record keep the depth they met it at). Not in place.
    """
    node_count = tree.node_count
    nodes = nodes.copy()
    depths = depths.copy()
    index = np.flatnonzero(nodes < node_count)
    current = nodes[index]
    for depth in range(first, last):
        if not index.size:
            break
        bits = (numbers[index] >> (31 - depth)) & 1
        current = tree._records(current, bits)
        done = current >= node_count
        if done.any():
            nodes[index[done]] = current[done]
            depths[index[done]] = depth + 1
            keep = ~done
            index = index[keep]
            current = current[keep]
    nodes[index] = current
    depths[index] = last
    return nodes, depths


TABLE_BITS = 16


def _top_table(tree: SearchTree, start: int) -> tuple[IntArray, IntArray]:
    """The node (or record pointer) and depth reached from ``start`` by each 16-bit prefix,
    as ``_descend`` finds them, built level by level (2**17 reads instead of 16 * 2**16)."""
    node_count = tree.node_count
    nodes = np.array([start], dtype=np.int64)
    depths = np.zeros(1, dtype=np.int64)
    for depth in range(TABLE_BITS):
        inside = nodes < node_count
        reachable = np.where(inside, nodes, 0)
        children = np.empty((len(nodes), 2), dtype=np.int64)
        for bit in (0, 1):
            found = tree._records(reachable, np.full(len(nodes), bit, dtype=np.int64))
            children[:, bit] = np.where(inside, found, nodes)  # a record stays where it is
        nodes = children.ravel()
        depths = np.repeat(np.where(inside, depth + 1, depths), 2)
    return nodes, depths


class IPv4Walker:
    """Array walks of IPv4 addresses through a ``SearchTree``; the first 16 levels are a table.

    Numpy pays per operation, not per element: a batch of a thousand addresses costs about as
    much per level as one address does. Looking the node at depth 16 up in a 65,536-entry
    table (built once, ~1 MB) halves the levels walked per batch.
    """

    TABLE_BITS = TABLE_BITS

    def __init__(self, tree: SearchTree) -> None:
        self.tree = tree
        self._nodes, self._depths = _top_table(tree, tree._ipv4_start)
        self._table: tuple[list[int], list[int]] | None = None  # the same, for ``find``

    def lookup(self, numbers: IntArray) -> tuple[IntArray, IntArray]:
        """``SearchTree.lookup_v4`` for an array of IPv4 integers, as arrays."""
        top = numbers >> (32 - self.TABLE_BITS)
        nodes, depths = _descend(
            self.tree, self._nodes[top], self._depths[top], numbers, self.TABLE_BITS, 32
        )
        inside = nodes < self.tree.node_count  # ran out of bits without a record
        nodes[inside] = self.tree.node_count
        depths[inside] = 0
        return nodes, depths

    def find(self, number: int) -> tuple[int, int]:
        """``lookup`` of one IPv4 integer in plain Python (no numpy call for a single address).

        Returns the node reached (a record pointer; ``node_count`` or below: no record) and
        the prefix length.
        """
        if self._table is None:
            self._table = (self._nodes.tolist(), self._depths.tolist())
        nodes, depths = self._table
        top = number >> (32 - self.TABLE_BITS)
        node, depth = nodes[top], depths[top]
        node_count = self.tree.node_count
        child = self.tree.child
        while depth < 32 and node < node_count:
            node = child(node, number >> (31 - depth) & 1)
            depth += 1
        return node, depth


class IPv6Walker:
    """Single IPv6 walks in plain Python, the first 16 levels from a table (IPv6 trees only).

    For the few IPv6 addresses of a typical batch this beats a numpy walk, which pays for each
    of up to 128 levels whatever the number of addresses.
    """

    def __init__(self, tree: SearchTree) -> None:
        self.tree = tree
        nodes, depths = _top_table(tree, 0)
        self._nodes: list[int] = nodes.tolist()
        self._depths: list[int] = depths.tolist()

    def find(self, number: int) -> tuple[int, int]:
        """``SearchTree.lookup_v6`` of one IPv6 integer: record pointer and prefix length."""
        top = number >> (128 - TABLE_BITS)
        node, depth = self._nodes[top], self._depths[top]
        node_count = self.tree.node_count
        child = self.tree.child
        while depth < 128 and node < node_count:
            node = child(node, number >> (127 - depth) & 1)
            depth += 1
        if node < node_count:  # ran out of bits without a record
            return node_count, 0
        return node, depth
