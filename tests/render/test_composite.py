import numpy as np

from headveil.render.composite import break_coincidences, identical_share


def test_coincident_region_pixels_are_flipped_by_one_level_and_nothing_else_changes():
    rng = np.random.default_rng(0)
    orig = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    out = orig.copy()
    out[:, 25:] = 255 - out[:, 25:]  # the right half re-rendered (differs); the left half coincides
    region = np.zeros((40, 50), bool)
    region[10:20, 20:30] = True  # 10 × 10, half of it on coinciding pixels
    assert identical_share(orig, out, region) == 0.5
    fixed, n = break_coincidences(orig, out, region)
    assert n == 50 and identical_share(orig, fixed, region) == 0.0
    diff = fixed.astype(int) - out.astype(int)
    assert np.abs(diff).max() == 1 and (diff[..., [0, 2]] == 0).all()
    assert (np.abs(diff).sum(-1) > 0).sum() == 50 and not diff[~region].any()
    assert identical_share(orig, out, np.zeros_like(region)) == 0.0
    assert break_coincidences(orig, out, np.zeros_like(region))[1] == 0
