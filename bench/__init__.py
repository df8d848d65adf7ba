"""bulkkm's benchmarks: makespan, throughput, memory, faults and the alternatives, measured.

Run ``make bench`` (the quick size), ``make bench-full`` or ``make bench-smoke``; or
``python -m bench --help``. The simulated fleet always runs in a process of its own, so the
client's CPU is what is measured.
"""
