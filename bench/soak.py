"""The long chaos soak (issue 6): 64 shards, 10 minutes, a fault every 0.5 s, on the embedded sandbox.

    python bench/soak.py                  # the documented run; result goes in bench/README.md
    python bench/soak.py --json > r.json  # same, as JSON
    python bench/soak.py --shards 16 --duration 30   # any option of `python -m shardtui.soak`

Exits 1 when the report shows any loss, duplicate, reordering, violation, exception or leftover.
"""

from __future__ import annotations

import sys

from shardtui.soak import main

LONG_RUN = ["--shards", "64", "--duration", "600", "--fault-interval", "0.5", "--seed", "1"]

if __name__ == "__main__":
    # Options given on the command line come after the defaults, so they win.
    raise SystemExit(main([*LONG_RUN, *sys.argv[1:]]))
