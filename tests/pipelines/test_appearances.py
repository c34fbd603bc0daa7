"""Helpers of the donor appearance that need no recognizer (hand-checkable)."""

import numpy as np

from headveil.geometry.camera import Camera, look_at
from headveil.pipelines.appearances import TONE_ATLAS_SIDE, _atlas_side
from headveil.render.appearance import appearance_uv


def _camera(f):
    return Camera(np.array([[f, 0, 160], [0, f, 160], [0, 0, 1.0]]), look_at((0, 0, 0.62)), 320, 320)


def test_the_mouth_atlas_is_as_dense_as_the_photo_and_no_denser(model):
    v = model.vertices()
    uv = model.landmarks_3d(appearance_uv(model), "ibug68")
    for f, ceiling in ((300.0, 4096), (900.0, 4096), (2700.0, 4096), (2700.0, 1024), (10.0, 2048)):
        cam = _camera(f)
        px, _ = cam.project(model.landmarks_3d(v, "ibug68"))
        need = max(np.linalg.norm(px[a] - px[b]) / np.linalg.norm(uv[a] - uv[b]) for a, b in ((36, 45), (27, 8)))
        side = _atlas_side(model, v, cam, ceiling)
        # a power of two from the floor up to the ceiling: the first ≥ the photo's density
        assert side & (side - 1) == 0 and TONE_ATLAS_SIDE <= side <= ceiling
        assert side >= min(need, ceiling)
        assert side == TONE_ATLAS_SIDE or side // 2 < need
    # three times the focal length: the face is three times the pixels, so the atlas grows
    assert _atlas_side(model, v, _camera(2700.0), 8192) >= 2 * _atlas_side(model, v, _camera(900.0), 8192)


def test_a_donors_mix_weight_ramps_over_its_seen_edge_instead_of_stepping():
    from headveil.pipelines.appearances import MIX_WEIGHT_SIGMA, _mix_weight

    S = 512
    conf = np.zeros((S, S), np.uint8)
    conf[:, : S // 2] = 255  # seen on the left half only (an occluder hole, an unseen side)
    w = _mix_weight(conf)
    assert w.shape == (S, S) and w.dtype == np.float32
    row = w[S // 2]
    assert abs(row[10] - 1.001) < 1e-3 and abs(row[-10] - 0.001) < 1e-3  # far from the edge: as it was
    assert np.all(np.diff(row) <= 1e-6)  # falls monotonically
    # a Gaussian edge: 10 %–90 % over 2.56 σ (σ = 1 % of the side, 5.1 texels here), not one texel
    width = np.sum((row > 0.1 + 1e-3) & (row < 0.9 + 1e-3))
    assert 0.7 * 2.56 * MIX_WEIGHT_SIGMA * S < width < 1.5 * 2.56 * MIX_WEIGHT_SIGMA * S


def test_previews_of_a_large_face_are_rendered_at_the_preview_size():
    from types import SimpleNamespace

    from headveil.pipelines.appearances import PREVIEW_FACE_PX, _preview_frame

    photo = np.zeros((400, 600, 3), np.uint8)
    region = np.zeros((400, 600), bool)
    region[100:300, 200:400] = True
    row = np.arange(15, dtype=np.float32)
    K = np.array([[900.0, 0, 300], [0, 900.0, 200], [0, 0, 1]])
    full = Camera(K, look_at((0, 0, 0.62)), 600, 400)
    big = SimpleNamespace(detection=SimpleNamespace(size=2.0 * PREVIEW_FACE_PX), camera=full)
    cam, p, r, k, rw = _preview_frame(big, photo, region, None, row)
    assert p.shape == (200, 300, 3) and r.shape == (200, 300) and k is None
    assert r.sum() == region.sum() // 4 and r[50:150, 100:200].all()
    assert (cam.width, cam.height) == (300, 200)
    np.testing.assert_allclose(cam.K[:2], K[:2] / 2)
    np.testing.assert_allclose(rw[:14], row[:14] / 2)
    assert rw[14] == row[14]  # the score is no coordinate
    small = SimpleNamespace(detection=SimpleNamespace(size=0.5 * PREVIEW_FACE_PX), camera=full)
    out = _preview_frame(small, photo, region, None, row)
    assert out[1] is photo and out[2] is region and out[4] is row


def test_preview_mixes_are_the_bank_size_mixes_averaged_and_reuse_their_donors(model):
    """A candidate mixed on the coarser preview atlas equals the same mix at the bank's size averaged
    2 × 2 (to the tone matching's nonlinearity), and a donor's reduced texels are computed once."""
    from types import SimpleNamespace

    from headveil.pipelines.appearances import DonorSelection, _face_texels, _mixed_albedos
    from headveil.render.appearance import uv_raster

    S = 256
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:S, 0:S] / S
    donors = []
    for k in range(2):  # smooth albedos with a different gradient each, half of one donor unseen
        alb = np.stack([0.55 + 0.2 * xx * (k + 1), 0.4 + 0.15 * yy, 0.35 + 0.05 * k + 0 * xx], -1)
        conf = np.full((S, S), 255, np.uint8)
        if k:
            conf[:, : S // 2] = 0
        donors.append(SimpleNamespace(id=f"d{k}", albedo=(alb * 255 + 0.5 * rng.uniform(size=alb.shape)).astype(np.uint8),
                                      confidence=conf))
    stats = (np.array([62.0, 14.0, 17.0]), np.array([6.0, 3.0, 4.0]))
    sel = DonorSelection(bank=None, selector=None)
    full = _mixed_albedos(model, [donors], S, stats, sel)[0]
    half = _mixed_albedos(model, [donors], S // 2, stats, sel)[0]
    inner = _face_texels(model, uv_raster(model, S // 2)).reshape(S // 2, S // 2)
    both = inner & (_face_texels(model, uv_raster(model, S)).reshape(S, S).reshape(S // 2, 2, S // 2, 2).all((1, 3)))
    avg = full.reshape(S // 2, 2, S // 2, 2, 3).mean((1, 3))
    assert both.sum() > 500
    assert np.abs(half[both] - avg[both]).mean() < 0.01
    cached = dict(sel._donor_cache)
    assert set(cached) == {("d0", S // 2), ("d1", S // 2)}  # the bank's own size is never cached
    _mixed_albedos(model, [donors], S // 2, stats, sel)
    assert all(sel._donor_cache[k][0] is cached[k][0] for k in cached)


def test_preview_side_divides_the_banks_side():
    from headveil.pipelines.appearances import PREVIEW_ATLAS_SIDE, _preview_side

    assert PREVIEW_ATLAS_SIDE == 512
    assert [_preview_side(s) for s in (128, 1024, 1536, 2048, 3000, 4096)] == [128, 512, 512, 512, 600, 512]


def test_the_chosen_mix_is_as_dense_as_the_photo_needs_and_divides_the_banks_side():
    from headveil.pipelines.appearances import _divided_side

    # 2048 / 3 is no whole atlas: 2048 / 2; a face needing 400 texels a side: 2048 / 4 (2048 / 5 is none)
    assert _divided_side(2048, 675) == 1024 and _divided_side(2048, 400) == 512
    assert _divided_side(2048, 3000) == 2048 and _divided_side(2048, 2048) == 2048  # never above the bank's
    assert _divided_side(3000, 700) == 750 and _divided_side(1536, 512) == 512


def test_the_donors_tried_keep_the_faces_apparent_gender():
    """Donors farther in apparent P(male) than the tolerance are left out while two others remain;
    fewer, and the nearest in gender tops the pool up; the order stays farthest first."""
    from types import SimpleNamespace

    from headveil.pipelines.appearances import gender_pool

    m1, f1, m2, f2 = (SimpleNamespace(apparent_male=p) for p in (0.9, 0.05, 0.8, 0.2))
    scored = [(1.0, m1), (0.9, f1), (0.8, m2), (0.7, f2)]
    pool, rec = gender_pool(scored, 0.1, 0.5)
    assert [d for _, d in pool] == [f1, f2] and rec == {"tolerance": 0.5, "pool": 2, "consistent": True}
    pool, rec = gender_pool(scored[:3], 0.1, 0.5)  # one woman left: the nearer man joins her
    assert [d for _, d in pool] == [f1, m2] and rec["consistent"] is False
    assert gender_pool(scored, 0.1, 1.0) == (scored, None)  # 1 tries every donor
    unknown = [(1.0, SimpleNamespace(apparent_male=None)), (0.9, SimpleNamespace(apparent_male=None))]
    assert gender_pool(unknown, 0.1, 0.5) == (unknown, None)  # a bank built without the networks
    assert gender_pool(scored, None, 0.5) == (scored, None)  # the networks not installed


def test_the_donors_tried_keep_the_faces_apparent_age():
    """Donors farther in apparent age than the tolerance are left out while two others remain;
    fewer, and the nearest in age tops the pool up; donors of unknown age come last."""
    from types import SimpleNamespace

    from headveil.pipelines.appearances import age_pool

    old, young, mid, unknown = (SimpleNamespace(apparent_age=a) for a in (80.0, 22.0, 40.0, None))
    scored = [(1.0, old), (0.9, young), (0.8, mid), (0.7, unknown)]
    pool, rec = age_pool(scored, 35.0, 15.0)
    assert [d for _, d in pool] == [young, mid] and rec == {"tolerance": 15.0, "pool": 2, "consistent": True}
    pool, rec = age_pool([scored[0], scored[2], scored[3]], 35.0, 15.0)  # one left: the nearer in age joins
    assert [d for _, d in pool] == [old, mid] and rec["consistent"] is False
    assert [d for _, d in age_pool(scored, 35.0, 100.0)[0]] == [old, young, mid]
    none = [(1.0, SimpleNamespace(apparent_age=None)), (0.9, SimpleNamespace(apparent_age=None))]
    assert age_pool(none, 35.0, 15.0) == (none, None)  # a bank without ages: unchanged
    assert age_pool(scored, None, 15.0) == (scored, None)  # the networks not installed


def test_a_mix_covers_every_texel_a_re_render_grown_to_the_outline_samples(model):
    # the re-render grows the face submesh over the outer skin to the detector's outline
    # (region_submesh): the mixed albedo must not be black on those triangles, nor at the vertex
    # UVs a seam triangle samples
    from headveil.pipelines.appearances import _face_texels
    from headveil.render.appearance import appearance_uv, outer_skin, uv_raster
    from headveil.render.deid.face3d import region_submesh

    S = 256
    r = uv_raster(model, S)
    cov = _face_texels(model, r).reshape(S, S)
    from headveil.geometry.camera import Camera, intrinsics_from_fov

    # the largest growth: the whole photo is the outline, every outer-skin vertex in view
    cam = Camera(intrinsics_from_fov(2048, 2048, 40.0), np.eye(4), 2048, 2048)
    v_w = model.vertices() * [1, -1, -1] + [0, 0, 0.6]  # model frame (+Y up, face to +Z) → camera
    sub = region_submesh(model, v_w, cam, np.ones((2048, 2048), bool))
    tri = np.zeros(len(model.faces) + 1, bool)
    tri[sub.triangles + 1] = True
    drawn = tri[r.face_index + 1]
    assert drawn.sum() > 0.5 * r.mask.sum() and cov[drawn].all()
    grown = np.zeros(len(model.faces) + 1, bool)
    grown[1:] = outer_skin(model)[model.faces].all(1)
    assert cov[grown[r.face_index + 1]].all()
    uv = appearance_uv(model)[outer_skin(model)]
    x = np.clip(np.floor(uv[:, 0] * S - 0.5).astype(int), 0, S - 2)
    y = np.clip(np.floor((1 - uv[:, 1]) * S - 0.5).astype(int), 0, S - 2)
    at = cov[y, x] | ~r.mask[y, x]
    assert at.all()


def test_an_open_mouth_takes_no_colour_from_texels_the_photo_never_saw(model):
    """The model's own mouth (grey-green under a skin light) where the photo saw nothing is filled
    from the teeth it did see, never shown."""
    import cv2

    from headveil.pipelines.appearances import _paste_mouth
    from headveil.render.photo_appearance import FaceAppearance

    cam = _camera(900.0)
    v = model.vertices()
    lips, _ = cam.project(model.landmarks_3d(v, "ibug68")[60:68])  # the inner lips
    opening = np.zeros((320, 320), np.uint8)
    cv2.fillPoly(opening, [np.round(lips).astype(np.int32)], 1)
    opening = cv2.dilate(opening, np.ones((9, 9), np.uint8)).astype(bool)  # a mouth open this far
    S = 512
    albedo = np.full((S, S, 3), 0.9, np.float32)  # teeth, where seen
    conf = np.ones((S, S), np.float32)
    blocks = (np.add.outer(np.arange(S) // 8, np.arange(S) // 8) % 2).astype(bool)  # a checkerboard of 8 texels
    albedo[blocks] = (0.3, 0.6, 0.5)  # unseen: the grey-green the model would give
    conf[blocks] = 0.0
    light = np.zeros((9, 3))
    light[0] = 1.0  # shading 1 everywhere
    target = FaceAppearance(albedo, conf, light, conf.copy())
    photo = np.full((320, 320, 3), 230, np.uint8)
    out = _paste_mouth(np.zeros((320, 320, 3), np.uint8), photo, opening, v, model, cam, target)
    core = cv2.erode(opening.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)  # in from the feathered rim
    px = out[core].astype(int)
    assert (np.abs(px - 230).max(1) <= 12).mean() > 0.97  # the seen teeth' grey, no unseen grey-green
