"""OpenMP's waiting policy for the command line, set before PyTorch starts (its OpenMP runtime reads it once).

PyTorch's CPU kernels run on GNU OpenMP threads that, at the end of each parallel region, spin for a while
(GOMP_SPINCOUNT iterations, 300,000 by default) before they sleep. On an idle machine the spinning saves a wake-up
per region. On a loaded one (a shared workstation, a CI runner, one busy process beside a 2-core training) a
spinning thread takes the core from the thread the others wait for, and a training step became ~29 times slower
instead of ~2. A shorter spin keeps most of the idle speed and avoids the collapse; the figures, alone and loaded,
for each setting are in benchmarks/cpu_contention.py's results and the README.

Library code never changes the host process (STYLE.md rule 10): only `cyclegan.cli.entry` calls this, and
whatever OpenMP variable the person set is left as it is.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

# Iterations a GNU OpenMP thread spins before it sleeps (chosen from benchmarks/results/cpu_contention.json).
SPIN_COUNT = "1000"
# Variables that mean the person chose how OpenMP threads wait: then we set nothing.
_USER_CHOICES = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


def set_openmp_defaults(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set our GOMP_SPINCOUNT in `environ` (default: this process's) unless the person set a waiting policy;
    returns what was set. Has an effect only if called before PyTorch is imported."""
    environ = os.environ if environ is None else environ
    if any(name in environ for name in _USER_CHOICES):
        return {}
    environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    return {"GOMP_SPINCOUNT": SPIN_COUNT}
