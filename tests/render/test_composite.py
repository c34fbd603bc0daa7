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
    mine = out.copy()
    same, n2 = break_coincidences(orig, mine, region, copy=False)  # in place: the caller's own copy
    assert same is mine and n2 == 50 and (mine == fixed).all()


def test_identical_share_counts_a_pixel_that_differs_in_one_channel_only():
    orig = np.zeros((2, 4, 3), np.uint8)
    out = orig.copy()
    out[0, 0, 2] = 1  # one level in blue
    out[0, 1] = 255  # all channels at the most (a saturating sum must not wrap to "same")
    out[0, 2, 0] = 255
    assert identical_share(orig, out, np.ones((2, 4), bool)) == 5 / 8


def test_a_face_sized_hole_is_filled_smoothly_from_its_surroundings():
    from headveil.render.composite import fill_region

    x = np.linspace(40, 200, 120)
    ramp = np.repeat(np.repeat(x[None, :, None], 100, 0), 3, 2)  # left to right, 40 → 200
    img = ramp.round().astype(np.uint8)
    hole = np.zeros((100, 120), bool)
    hole[30:70, 40:80] = True
    img[hole] = (255, 0, 255)  # the face to remove
    out = fill_region(img, hole)
    assert (out[~hole] == img[~hole]).all()  # nothing outside changes
    err = np.abs(out[hole].astype(float) - ramp[hole])
    assert err.max() < 12 and err.mean() < 4  # the ramp carried across, no magenta left
    assert (fill_region(img, np.zeros_like(hole)) == img).all()
    assert (fill_region(img, np.ones_like(hole)) == 128).all()  # nothing to fill from: mid grey
