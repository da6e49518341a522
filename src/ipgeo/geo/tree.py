"""The one search-tree walker of MaxMind DB files: addresses → record pointers, one or many.

Decoding a record costs more than the whole tree walk, and most addresses share records, so
the kernel first finds each address's *record pointer* and prefix length here (for one
address in plain Python, for a batch with numpy; the layout is fixed by the MaxMind DB spec),
then decodes each distinct record once (``ipgeo.geo.records``). The first 16 levels of the
IPv4 and the IPv6 walk come from tables built once per file.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
TABLE_BITS = 16
# (device, inode, size, mtime in ns): changes whenever a file is replaced or rewritten.
FileSignature = tuple[int, int, int, int]


def signature_of(stat: os.stat_result) -> FileSignature:
    """The ``FileSignature`` of a ``stat`` result."""
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


class SearchTree:
    """The nodes of one ``.mmdb`` file's search tree, memory-mapped read-only."""

    def __init__(self, path: Path, node_count: int, record_size: int, ip_version: int) -> None:
        self.node_count = node_count
        self.record_size = record_size
        self.ip_version = ip_version
        if self.record_size not in (24, 28, 32):
            raise ValueError(f"unsupported record size {self.record_size}")
        tree_bytes = self.record_size * 2 // 8 * self.node_count
        with path.open("rb") as handle:
            # of the file mapped, whatever replaces it later
            self.signature = signature_of(os.fstat(handle.fileno()))
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        if len(self._map) < tree_bytes:
            self._map.close()
            raise ValueError("the file is shorter than its search tree")
        # Every 4 bytes of the file read as one big-endian integer, at any byte offset (an
        # overlapping strided view): one gather per level of the walk reads a record.
        self._words: npt.NDArray[np.uint32] = np.ndarray(
            (len(self._map) - 3,), dtype=">u4", buffer=self._map, strides=(1,)
        )

    def children(self, nodes: IntArray, bits: npt.NDArray[np.integer]) -> IntArray:
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

    def close(self) -> None:
        """Release the mapping."""
        del self._words
        self._map.close()


# The bit of each address (as arrays) at one depth of the walk.
BitsAt = Callable[[int, npt.NDArray[np.intp]], npt.NDArray[np.int64]]


def _descend(
    tree: SearchTree, nodes: IntArray, depths: IntArray, bits_at: BitsAt, first: int, last: int
) -> tuple[IntArray, IntArray]:
    """Follow the bits at depths ``first`` … ``last - 1`` from ``nodes`` (arrays, not in place).

    Returns the node or record pointer reached and the depth of each (``last`` for walks still
    inside the tree; those that met a record keep the depth they met it at).
    """
    node_count = tree.node_count
    nodes = nodes.copy()
    depths = depths.copy()
    index = np.flatnonzero(nodes < node_count)
    current = nodes[index]
    for depth in range(first, last):
        if not index.size:
            break
        current = tree.children(current, bits_at(depth, index))
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


def _top_table(tree: SearchTree, start: int) -> tuple[IntArray, IntArray]:
    """The node (or record pointer) and depth reached from ``start`` by each 16-bit prefix,
    built level by level (2**17 reads instead of 16 * 2**16)."""
    node_count = tree.node_count
    nodes = np.array([start], dtype=np.int64)
    depths = np.zeros(1, dtype=np.int64)
    for depth in range(TABLE_BITS):
        inside = nodes < node_count
        reachable = np.where(inside, nodes, 0)
        children = np.empty((len(nodes), 2), dtype=np.int64)
        for bit in (0, 1):
            found = tree.children(reachable, np.full(len(nodes), bit, dtype=np.int64))
            children[:, bit] = np.where(inside, found, nodes)  # a record stays where it is
        nodes = children.ravel()
        depths = np.repeat(np.where(inside, depth + 1, depths), 2)
    return nodes, depths


class _Table:
    """A 16-bit top table as arrays (for batches) and as lists (for single addresses)."""

    def __init__(self, tree: SearchTree, start: int) -> None:
        self.nodes, self.depths = _top_table(tree, start)
        self.node_list: list[int] = self.nodes.tolist()
        self.depth_list: list[int] = self.depths.tolist()


class TreeWalker:
    """Walks IPv4 and IPv6 addresses through one ``SearchTree``, one at a time or as arrays.

    A pointer above ``node_count`` is a record; ``node_count`` itself means no record (the
    prefix is then the length of the network without one). IPv4 addresses in an IPv6 tree
    are walked from the IPv4 subtree (``::/96``), so their prefix lengths count IPv4 bits, as
    ``maxminddb`` reports them.
    """

    def __init__(self, tree: SearchTree) -> None:
        self.tree = tree
        self.node_count = tree.node_count
        start, depth = 0, 0
        if tree.ip_version == 6:
            while depth < 96 and start < tree.node_count:
                start = tree.child(start, 0)
                depth += 1
        self._v4 = _Table(tree, start)
        self._v6 = _Table(tree, 0) if tree.ip_version == 6 else None

    def find(self, version: int, number: int) -> tuple[int, int]:
        """The record pointer and prefix length of one address given as an integer."""
        width = 32 if version == 4 else 128
        table = self._v4 if version == 4 else self._v6
        if table is None:  # an IPv6 address in an IPv4-only tree
            return self.node_count, 0
        top = number >> (width - TABLE_BITS)
        node, depth = table.node_list[top], table.depth_list[top]
        node_count = self.node_count
        child = self.tree.child
        while depth < width and node < node_count:
            node = child(node, number >> (width - 1 - depth) & 1)
            depth += 1
        if node < node_count:  # ran out of bits inside the tree: no record
            return node_count, depth
        return node, depth

    def walk_v4(self, numbers: IntArray) -> tuple[IntArray, IntArray]:
        """``find`` of an array of IPv4 integers, as arrays of pointers and prefix lengths."""
        top = numbers >> (32 - TABLE_BITS)

        def bits_at(depth: int, index: npt.NDArray[np.intp]) -> IntArray:
            bits: IntArray = (numbers[index] >> (31 - depth)) & 1
            return bits

        nodes, depths = _descend(
            self.tree, self._v4.nodes[top], self._v4.depths[top], bits_at, TABLE_BITS, 32
        )
        return self._records_only(nodes, depths)

    def walk_v6(self, numbers: list[int]) -> tuple[IntArray, IntArray]:
        """``find`` of IPv6 integers, walked as arrays (two 64-bit halves per address)."""
        count = len(numbers)
        if self._v6 is None:
            return np.full(count, self.node_count, dtype=np.int64), np.zeros(count, np.int64)
        high = np.array([number >> 64 for number in numbers], dtype=np.uint64)
        low = np.array([number & 0xFFFF_FFFF_FFFF_FFFF for number in numbers], dtype=np.uint64)
        one = np.uint64(1)

        def bits_at(depth: int, index: npt.NDArray[np.intp]) -> IntArray:
            half, shift = (high, 63 - depth) if depth < 64 else (low, 127 - depth)
            return ((half[index] >> np.uint64(shift)) & one).astype(np.int64)

        top = (high >> np.uint64(64 - TABLE_BITS)).astype(np.int64)
        nodes, depths = _descend(
            self.tree, self._v6.nodes[top], self._v6.depths[top], bits_at, TABLE_BITS, 128
        )
        return self._records_only(nodes, depths)

    def _records_only(self, nodes: IntArray, depths: IntArray) -> tuple[IntArray, IntArray]:
        """Walks that ran out of bits inside the tree answer ``node_count``, as ``find`` does."""
        nodes[nodes < self.node_count] = self.node_count
        return nodes, depths

    def close(self) -> None:
        """Release the tree's mapping."""
        self.tree.close()
