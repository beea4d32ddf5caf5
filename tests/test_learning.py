"""A short CPU training on the built-in data set must move translations toward the paired ground truth."""

import pytest

from cyclegan.quickstart import demo_config, run_demo


@pytest.mark.slow
def test_short_training_learns_the_builtin_translation(tmp_path, capsys):
    config = demo_config(tmp_path / "run", builtin_size=32, builtin_count=60, load_size=36, crop_size=32, ngf=16,
                         ndf=16, n_epochs=3, n_epochs_decay=2, num_workers=0, device="cpu", num_samples=2)
    result = run_demo(config, show_progress=False)
    with capsys.disabled():
        for direction, score in result.scores.items():
            print(f"\n{direction}: mean L1 to ground truth, trained {score['trained']:.3f} "
                  f"vs untrained {score['untrained']:.3f}")
    photos_to_labels = result.scores["BtoA"]
    labels_to_photos = result.scores["AtoB"]
    assert photos_to_labels["trained"] < 0.6 * photos_to_labels["untrained"]
    assert labels_to_photos["trained"] < 0.85 * labels_to_photos["untrained"]
    # the main job's outputs: translations of every test image both ways, their page, the scores and the report
    test_count = len(list((result.run_dir / "translations" / "AtoB").glob("*.png")))
    assert test_count == 15 and len(list((result.run_dir / "translations" / "BtoA").glob("*.png"))) == 15
    assert (result.translations / "index.html").exists() and (result.run_dir / "scores.json").exists()
    assert "translations/index.html" in (result.run_dir / "index.html").read_text()
