import os

import pytest
import torch

# The suite compares the torch engine's outputs exactly in many places; the default engine (`auto`, which is
# onnxruntime on AVX-512 CPUs) is tested where it is named (tests/test_engines.py). Set before any test starts a
# `cyclegan` process, so those inherit it too.
os.environ["CYCLEGAN_ENGINE"] = "torch"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
