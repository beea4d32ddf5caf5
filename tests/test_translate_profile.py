"""benchmarks/translate_profile.py on a tiny generator: every layer kind is timed and every mode is compared."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_translate_profile_smoke(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    script = importlib.import_module("translate_profile")
    out = tmp_path / "profile.json"
    assert script.main(["--sizes", "16", "--profile-size", "16", "--ngf", "4", "--repeats", "1", "--warmup", "0",
                        "--conv-repeats", "1", "--threads", "1", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    profile = results["profile"]
    for mode in script.MODES:
        assert set(profile[mode]["seconds"]) == {*script.KINDS, "total"}
        assert abs(sum(profile[mode]["share"].values()) - 1) < 1e-9
    # ResNet-9, ngf 4, 16 px: 18 residual 3x3 convolutions of 16 channels on 4x4 maps
    assert abs(profile["gmacs"]["conv 3x3 residual"] - 18 * 4 * 4 * 16 * 16 * 9 / 1e9) < 1e-12
    whole = results["whole"]["16"]
    assert whole["fp32"]["max_abs_vs_fp32"] == 0 and whole["winograd"]["max_abs_vs_fp32"] < 1e-4
    assert set(results["residual_conv"]["4"]) == {"onednn", "winograd_f4", "winograd_f6"}
    assert results["peak"]["mkl_gflops"] > 0 and results["machine"]["cpu_model"]
    assert "Per layer kind at 16 px" in capsys.readouterr().out
