"""The command line's OpenMP defaults: set before torch starts, never over what the person chose."""

import os
import subprocess
import sys

from cyclegan.cli.openmp import SPIN_COUNT, set_openmp_defaults


def test_defaults_are_set_unless_the_person_chose_a_waiting_policy():
    environ = {}
    assert set_openmp_defaults(environ) == {"GOMP_SPINCOUNT": SPIN_COUNT} == environ
    for chosen in ({"GOMP_SPINCOUNT": "5"}, {"OMP_WAIT_POLICY": "ACTIVE"}):
        environ = dict(chosen)
        assert set_openmp_defaults(environ) == {} and environ == chosen


def _child(code, **env):
    base = {key: value for key, value in os.environ.items() if key not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**base, **env},
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_entry_point_sets_them_before_torch_is_imported():
    """libgomp reads its variables once, when torch loads it: the entry module must not import torch itself."""
    code = ("import sys, os; from cyclegan.cli import entry; assert 'torch' not in sys.modules, 'torch imported'; "
            "entry.main(['data', 'list']); assert 'torch' in sys.modules; print(os.environ.get('GOMP_SPINCOUNT'))")
    assert _child(code).splitlines()[-1] == SPIN_COUNT
    assert _child(code, GOMP_SPINCOUNT="7").splitlines()[-1] == "7"
    assert _child(code, OMP_WAIT_POLICY="PASSIVE").splitlines()[-1] == "None"
