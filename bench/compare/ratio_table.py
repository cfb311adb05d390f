"""Turn pytest-benchmark JSON into markdown tables: ns per unit of work and ratios to
fastperm-numba.

One table per unit (training steps, brackets); each benchmark's ``extra_info``
gives the ``count`` of units one call does and the ``unit``.

    python bench/compare/ratio_table.py bench/compare/results.json [> table.md]

Times are the minimum over rounds (the least disturbed by the machine's noise).
"""

import json
import sys


def table(data) -> str:
    machine = data.get("machine_info", {})
    cpu = machine.get("cpu", {}).get("brand_raw") or machine.get("processor") or "?"
    when = data.get("datetime", "?")[:10]
    units = {}
    for b in data["benchmarks"]:
        info = b.get("extra_info", {})
        unit = info.get("unit", "step")
        count = info.get("count", info.get("steps", 1))
        units.setdefault(unit, {}).setdefault(b["group"], {})[info.get("contender", b["name"])] = (
            b["stats"]["min"] * 1e9 / count
        )
    head = (
        f"{when}, {cpu}, {machine.get('cpu', {}).get('count', '?')} CPUs, "
        f"Python {machine.get('python_version', '?')}"
    )
    return "\n\n".join(_unit_table(unit, groups, head) for unit, groups in units.items())


def _unit_table(unit, groups, head) -> str:
    contenders = sorted(
        {c for g in groups.values() for c in g}, key=lambda c: (not c.startswith("fastperm"), c)
    )
    lines = [
        f"ns per {unit} (min over rounds) and ratio to fastperm-numba; {head}",
        "",
        "| workload | " + " | ".join(contenders) + " |",
        "|---|" + "---:|" * len(contenders),
    ]
    for group, row in groups.items():
        base = row.get("fastperm-numba")
        cells = []
        for c in contenders:
            if c not in row:
                cells.append("—")
            elif base is None or c == "fastperm-numba":
                cells.append(f"{row[c]:,.1f}")
            else:
                cells.append(f"{row[c]:,.1f} ({row[c] / base:,.1f}×)")
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        print(table(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
