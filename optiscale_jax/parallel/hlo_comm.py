"""Communication volume of a compiled program, read from its optimized HLO text.

Every collective in ``compiled.as_text()`` (after SPMD partitioning: per-device
shapes) is counted once per execution: an op inside a ``while`` body counts
``known_trip_count`` times (XLA records it for ``lax.scan`` loops; 1 when
unknown), inside nested loops the product; both branches of a ``conditional``
count once (an upper bound). Collectives over groups of one device (a mesh axis
of size 1) move nothing and are left out.

Bytes per device use the ring-algorithm traffic of a group of ``g`` devices,
``B`` being the per-device result size in bytes:

    all-gather          B (g-1)/g       (receives the other g-1 pieces)
    reduce-scatter      B (g-1)         (sends g-1 pieces of its full input g B)
    all-reduce          2 B (g-1)/g     (a reduce-scatter then an all-gather)
    all-to-all          B (g-1)/g
    collective-permute  B               (one send and one receive)
"""

from __future__ import annotations

import re
from typing import NamedTuple

KINDS = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")
DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "f16": 2, "bf16": 2, "s16": 2, "u16": 2, "f32": 4,
               "s32": 4, "u32": 4, "f64": 8, "s64": 8, "u64": 8, "c64": 8, "c128": 16}
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%([\w.\-]+)\s*\(")
_OP = re.compile(r"^\s*(?:ROOT\s+)?%[\w.\-]+\s*=\s*(.+?)\s+(" + "|".join(KINDS) + r")(?:-start)?\(")
_ARRAY = re.compile(r"\b([a-z]+\d*)\[([\d,]*)\]")
_TRIP = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
_CALLEE = re.compile(r"\b(?:calls|to_apply|true_computation|false_computation)=%([\w.\-]+)")


class CommVolume(NamedTuple):
    """Bytes per device moved by each kind of collective (ring traffic, see module doc),
    and how many collective executions of each kind."""

    bytes_by_kind: dict[str, float]
    count_by_kind: dict[str, int]

    @property
    def total_bytes(self) -> float:
        return float(sum(self.bytes_by_kind.values()))

    def scaled(self, factor: float) -> CommVolume:
        """Every figure times ``factor`` (e.g. 1 / steps for a per-step figure)."""
        return CommVolume({k: v * factor for k, v in self.bytes_by_kind.items()},
                          {k: v * factor for k, v in self.count_by_kind.items()})


def _array_bytes(type_text: str) -> int:
    total = 0
    for dtype, dims in _ARRAY.findall(type_text):
        size = 1
        for d in filter(None, dims.split(",")):
            size *= int(d)
        total += size * DTYPE_BYTES.get(dtype, 4)
    return total


def _group_size(line: str) -> int:
    """Devices per group: from ``replica_groups={{0,1},{2,3}}``, the iota form
    ``[groups,size]<=[n]``, the mesh form ``mesh['a'=2,'b'=4] {'b'}`` (optionally with
    ``device_ids=...`` before the braces), or a permute's pairs."""
    mesh = re.search(r"replica_groups=mesh\[([^\]]*)\][^{]*\{([^}]*)\}", line)
    if mesh:
        sizes = {name: int(size) for name, size in re.findall(r"'([^']+)'=(\d+)", mesh.group(1))}
        size = 1
        for name in re.findall(r"'([^']+)'", mesh.group(2)):
            size *= sizes.get(name, 1)
        return size
    iota = re.search(r"replica_groups=\[(\d+),(\d+)\]", line)
    if iota:
        return int(iota.group(2))
    groups = re.search(r"replica_groups=\{\{([\d,]*)\}", line)
    if groups:
        return len([g for g in groups.group(1).split(",") if g])
    pairs = re.search(r"source_target_pairs=\{([^}]*)\}", line)
    if pairs:  # a permute moves data unless every pair is {i,i}
        moving = [p for p in re.findall(r"\{(\d+),(\d+)", "{" + pairs.group(1)) if p[0] != p[1]]
        return 2 if moving else 1
    return 1


def _traffic(kind: str, result_bytes: int, group: int) -> float:
    if kind == "all-gather" or kind == "all-to-all":
        return result_bytes * (group - 1) / group
    if kind == "reduce-scatter":
        return float(result_bytes * (group - 1))
    if kind == "all-reduce":
        return 2.0 * result_bytes * (group - 1) / group
    return float(result_bytes)  # collective-permute


def _parse(hlo_text: str) -> tuple[dict, dict, str | None]:
    """{computation: [(kind, bytes)]}, {computation: [(callee, times)]}, entry name."""
    ops: dict[str, list] = {}
    calls: dict[str, list] = {}
    entry, current = None, None
    for line in hlo_text.splitlines():
        header = _COMPUTATION.match(line)
        if header and line.rstrip().endswith("{"):
            current = header.group(1)
            ops[current], calls[current] = [], []
            if line.startswith("ENTRY"):
                entry = current
            continue
        if current is None:
            continue
        op = _OP.match(line)
        if op:
            group = _group_size(line)
            if group > 1:
                ops[current].append((op.group(2), _traffic(op.group(2), _array_bytes(op.group(1)), group)))
        if " while(" in line:
            trip = _TRIP.search(line)
            body = re.search(r"body=%([\w.\-]+)", line)
            if body:
                calls[current].append((body.group(1), int(trip.group(1)) if trip else 1))
        for name in re.findall(r"branch_computations=\{([^}]*)\}", line):
            calls[current] += [(b.strip().lstrip("%"), 1) for b in name.split(",")]
        for callee in _CALLEE.findall(line):
            calls[current].append((callee, 1))
    return ops, calls, entry


def collective_volume(hlo_text: str) -> CommVolume:
    """The communication of one execution of the program whose optimized HLO is ``hlo_text``."""
    ops, calls, entry = _parse(hlo_text)
    if entry is None:
        raise ValueError("no ENTRY computation in the HLO text; pass compiled.as_text()")
    bytes_by_kind = dict.fromkeys(KINDS, 0.0)
    count_by_kind = dict.fromkeys(KINDS, 0)
    stack = [(entry, 1)]
    while stack:  # computations are a DAG; walk it with multiplicities
        name, times = stack.pop()
        for kind, traffic in ops.get(name, ()):
            bytes_by_kind[kind] += traffic * times
            count_by_kind[kind] += times
        stack.extend((callee, times * n) for callee, n in calls.get(name, ()))
    return CommVolume(bytes_by_kind, count_by_kind)
