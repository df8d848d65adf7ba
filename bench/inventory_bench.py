"""Time ``load_inventory`` on a generated 10,000-cluster inventory (median of 5 runs).

.venv/bin/python bench/inventory_bench.py [--clusters N] [--runs R]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import trustme

from bulkkm.inventory import load_inventory

REGIONS = ("emea", "apac", "amer", "latam", "anz")


def write_inventory(directory: Path, clusters: int) -> Path:
    """Write a group-heavy inventory of ``clusters`` clusters (and its CA file); its path."""
    trustme.CA().cert_pem.write_to_path(str(directory / "ca.pem"))
    lines = [
        "version: 1",
        "defaults:",
        "  username: admin",
        "  password: env:ONTAP_PASSWORD",
        "  tls: {ca_file: ca.pem}",
        "  limits: {concurrency: 4, timeout: 30}",
        "  key_servers:",
        "    - server: kms1.example.com",
        "      secondary_key_servers: [kms1-dr.example.com]",
        "      password: env:KMIP_PASSWORD",
        "    - kms2.example.com",
        "  exclude_svms: ['*_test']",
        "groups:",
    ]
    for region in REGIONS:
        lines += [
            f"  {region}:",
            f"    password: env:ONTAP_{region.upper()}_PASSWORD",
            "    limits: {concurrency: 2, rate: 10}",
            f"    key_servers: [kms-{region}-1.example.com, kms-{region}-2.example.com]",
        ]
    lines += ["  admin:", "    cluster_scope: true", "clusters:"]
    for index in range(clusters):
        region = REGIONS[index % len(REGIONS)]
        groups = f"[{region}, admin]" if index % 3 == 0 else f"[{region}]"
        lines += [
            f"  - name: {region}-{index:05d}",
            f"    address: 10.{index // 65536}.{index // 256 % 256}.{index % 256}",
            f"    groups: {groups}",
        ]
        if index % 4 == 0:
            lines.append("    svms: all")
        else:
            lines += [
                "    svms:",
                "      - svm_finance",
                f"      - name: svm_hr{index % 7}",
                "        key_servers: [kms-hr.example.com]",
                "      - 'app_*'",
            ]
        if index % 10 == 0:
            lines.append("    limits: {timeout: 60}")
    path = directory / "fleet.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main() -> None:
    """Generate, load ``--runs`` times, print the median."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    environ = {
        "ONTAP_PASSWORD": "bench-ontap",
        "KMIP_PASSWORD": "bench-kmip",
        **{f"ONTAP_{r.upper()}_PASSWORD": f"bench-{r}" for r in REGIONS},
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = write_inventory(Path(tmp), args.clusters)
        size = path.stat().st_size
        timings = []
        for _ in range(args.runs):
            start = time.perf_counter()
            inventory = load_inventory(path, environ=environ)
            timings.append(time.perf_counter() - start)
    assert len(inventory.clusters) == args.clusters
    print(
        f"load_inventory: {args.clusters} clusters ({size / 1e6:.1f} MB YAML): "
        f"median {statistics.median(timings):.3f} s of {args.runs} runs "
        f"(min {min(timings):.3f} s, max {max(timings):.3f} s)"
    )


if __name__ == "__main__":
    main()
