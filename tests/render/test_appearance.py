"""UV appearance: atlas layout, baking, light, de-lighting, filling (hand-checkable)."""

import numpy as np
import pytest

from headveil.common.images import srgb_to_lab
from headveil.geometry.camera import Camera, look_at
from headveil.render import appearance as ap
from headveil.render import photo_appearance as pa
from headveil.render.mipmap import mip_levels
from headveil.render.shading import sh_basis


def _uv_area(model, tri, S):
    uv = ap.appearance_uv(model)[model.faces[tri]]
    a = 0.5 * np.abs((uv[:, 1, 0] - uv[:, 0, 0]) * (uv[:, 2, 1] - uv[:, 0, 1])
                     - (uv[:, 2, 0] - uv[:, 0, 0]) * (uv[:, 1, 1] - uv[:, 0, 1]))
    return a.sum() * S * S


def test_the_atlas_has_no_overlap_and_seam_triangles_are_left_out(model):
    S = 512
    r = ap.uv_raster(model, S)
    used = ap.uv_triangles(model) & ap.appearance_triangles(model)
    # covered texels = the UV area of the triangles rasterised: nothing lies on top of anything else
    assert abs(r.mask.sum() - _uv_area(model, used, S)) < 0.02 * r.mask.sum()
    assert 0.9 < used.sum() / ap.appearance_triangles(model).sum() < 1.0  # a few seam triangles dropped
    assert set(np.unique(r.face_index[r.mask])) <= set(np.flatnonzero(used))


def test_small_parts_get_enlarged_islands(model):
    uv0, uv1 = np.asarray(model.uv, np.float64), ap.appearance_uv(model)
    eye = model.vertex_part == model.part_names.index("eye_left")
    assert np.ptp(uv1[eye], 0).max() > 4 * np.ptp(uv0[eye], 0).max()
    skin = model.vertex_part == model.part_names.index("skin")
    np.testing.assert_array_equal(uv1[skin], uv0[skin])


def test_light_is_recovered_exactly_from_noise_free_shading():
    rng = np.random.default_rng(0)
    n = rng.normal(size=(500, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    gamma = np.zeros((9, 3))
    gamma[0] = [0.9, 0.8, 0.7]
    gamma[2] = [0.3, 0.3, 0.2]
    albedo = rng.uniform(0.3, 0.9, size=(500, 3))
    colors = albedo * (sh_basis(n) @ gamma)
    got = ap.estimate_light(colors, albedo, n, np.ones(500), ridge=0.0)
    np.testing.assert_allclose(got, gamma, atol=1e-8)


def test_a_render_is_baked_delit_and_its_albedo_recovered(model):
    """Render the model with a known albedo texture under a known light; the appearance read back
    from that image gives the albedo on the seen skin and the light."""
    S = 512
    cam = Camera(np.array([[900.0, 0, 160], [0, 900.0, 160], [0, 0, 1]]), look_at((0, 0, 0.62)), 320, 320)
    R, t = np.diag([1.0, 1.0, 1.0]), np.zeros(3)
    v = model.vertices()
    truth = np.zeros((S, S, 3), np.float32)
    ys, xs = np.mgrid[0:S, 0:S]
    truth[..., 0] = 0.55 + 0.2 * np.sin(xs / 9.0)  # a pattern with detail finer than a vertex spacing
    truth[..., 1] = 0.45
    truth[..., 2] = 0.35 + 0.1 * np.cos(ys / 7.0)
    gamma = np.zeros((9, 3))
    gamma[0] = 0.85
    gamma[2] = -0.25  # brighter toward the camera (−z in the camera frame faces it)
    img, cov = ap.render_textured(v, model.faces, ap.appearance_uv(model), truth, cam, gamma,
                                  uv_ok=ap.uv_triangles(model))
    photo = (np.clip(img + (1 - cov[..., None]) * 0.5, 0, 1) * 255 + 0.5).astype(np.uint8)
    app = pa.face_appearance(photo, model, v, R, t, cam, None, size=S)
    skin = ap.skin_texels(model, ap.uv_raster(model, S)) & (app.seen > 0.9)
    assert skin.sum() > 2000
    # the light is known only up to the albedo's scale: compare shading ratios, then the albedo up to it
    ratio = np.median(app.albedo[skin] / np.maximum(truth[skin], 1e-3), 0)
    err = np.abs(app.albedo[skin] / ratio - truth[skin])
    assert np.median(err) < 0.03
    # and the texture keeps the pattern's detail (per-vertex colours could not: vertex spacing ≫ 9 texels)
    corr = np.corrcoef(app.albedo[skin][:, 0], truth[skin][:, 0])[0, 1]
    assert corr > 0.8
    # without completion: the same light and seen skin, confidence = the visibility weight
    bare = pa.face_appearance(photo, model, v, R, t, cam, None, size=S, complete=False)
    np.testing.assert_array_equal(bare.light, app.light)
    np.testing.assert_array_equal(bare.confidence, bare.seen)
    np.testing.assert_allclose(bare.albedo[skin], app.albedo[skin], atol=1e-6)


def test_unseen_texels_take_their_mirror_then_the_model(model):
    S = 256
    r = ap.uv_raster(model, S)
    skin = ap.skin_texels(model, r)
    alb = np.zeros((S, S, 3), np.float32)
    alb[skin] = [0.8, 0.2, 0.2]
    w = skin.astype(np.float32)
    pos, idx = ap.texel_attribute(r, model.vertices(), model.faces)
    left = np.zeros(S * S, bool)
    left[idx] = pos[:, 0] > 0.005
    left = left.reshape(S, S) & skin
    w[left] = 0  # the photo saw only the right half
    alb[left] = 0
    filled, conf = ap.fill_unseen(alb, w, model, r, np.full((model.n_vertices, 3), 0.5))
    np.testing.assert_allclose(np.median(filled[left], 0), [0.8, 0.2, 0.2], atol=0.02)
    assert np.median(conf[left]) > 0.95


def test_unseen_teeth_and_eyes_take_the_skins_lightness_not_its_colour(model):
    """A skin yellower than the model's (ratio 0.8, 1.0, 1.0 to it) fills the unseen skin with that
    ratio, but unseen teeth and eyeballs only with its lightness: their ratio is grey."""
    S = 256
    r = ap.uv_raster(model, S)
    ref_v = np.full((model.n_vertices, 3), 0.5)
    skin = ap.skin_texels(model, r)
    alb = np.zeros((S, S, 3), np.float32)
    alb[skin] = [0.4, 0.5, 0.5]
    w = skin.astype(np.float32)
    own = ap.texel_mask(model, r, model.part_mask("teeth", "eye_left", "eye_right")) & ~skin
    filled, _ = ap.fill_unseen(alb, w, model, r, ref_v)
    ratio = filled[own] / 0.5
    assert own.sum() > 50
    np.testing.assert_allclose(ratio[:, 0], ratio[:, 1], atol=1e-3)  # grey: no green teeth
    np.testing.assert_allclose(np.median(ratio[:, 0]), np.exp(np.log([0.8, 1.0, 1.0]).mean()), atol=0.02)


def test_texels_in_deep_shadow_lose_their_weight(model):
    """Weight 1 at ≥ 0.6 of the skin's median irradiance, 0 at ≤ 0.25, linear between."""
    S = 128
    r = ap.uv_raster(model, S)
    weight = r.mask.astype(np.float32)
    gamma = np.zeros((9, 3))
    gamma[0], gamma[2] = 1.0, 0.2  # irradiance 1.4 toward +z, 0.6 toward −z (camera frame = world)
    normals = np.zeros((S, S, 3), np.float32)
    normals[..., 2] = 1.0
    skin = ap.skin_texels(model, r)
    ys, xs = np.nonzero(skin)
    dark = np.zeros((S, S), bool)
    dark[ys[:40], xs[:40]] = True
    normals[dark] = [0.0, 0.0, -1.0]
    lit, shade = (ap.shading(np.array([[0.0, 0.0, z]]), gamma)[0] @ [0.299, 0.587, 0.114] for z in (1.0, -1.0))
    w = ap.shadow_weight(normals, weight, gamma, np.eye(4), model, r)
    np.testing.assert_allclose(w[skin & ~dark], 1.0)
    np.testing.assert_allclose(w[dark], np.clip((shade / lit - 0.25) / 0.35, 0, 1), atol=1e-5)
    np.testing.assert_allclose(w[dark], (0.6 / 1.4 - 0.25) / 0.35, atol=1e-5)  # 0.51
    np.testing.assert_array_equal(ap.shadow_weight(normals, np.zeros_like(weight), gamma, np.eye(4), model, r), 1.0)


def test_pull_push_fill_keeps_what_was_seen_and_fills_holes_smoothly():
    S = 64
    ys, xs = np.mgrid[0:S, 0:S].astype(np.float32)
    ramp = np.stack([xs / (S - 1), np.full_like(xs, 0.5)], -1)  # 0 → 1 left to right, constant 0.5
    w = np.ones((S, S), np.float32)
    w[20:44, 20:44] = 0  # a hole in the middle
    values = np.where(w[..., None] > 0, ramp, 9.0)  # the hole holds garbage
    out = ap.pull_push_fill(values, w)
    np.testing.assert_array_equal(out[w > 0], values[w > 0])  # seen texels are kept exactly
    hole = out[20:44, 20:44]
    np.testing.assert_allclose(hole[..., 1], 0.5, atol=1e-5)  # a constant stays constant
    lo, hi = ramp[20:44, 19, 0].min(), ramp[20:44, 44, 0].max()
    assert lo - 1e-3 <= hole[..., 0].min() and hole[..., 0].max() <= hi + 1e-3  # within its rim's values
    assert hole[:, -1, 0].mean() > hole[:, 0, 0].mean() + 0.05  # and follows the ramp across the hole
    assert np.abs(np.diff(out[..., 0], axis=1)).max() < 0.1  # no edge at the rim


def test_a_skin_hued_fringe_is_rejected_on_the_forehead_but_not_on_a_cheek(model):
    """Darker skin-hued texels (a fringe of hair) 3 robust units from the skin model: rejected on the
    forehead (limit 2.5), kept on a cheek (limit 4: shading there is skin)."""
    from headveil.common.images import lab_to_srgb

    S = 256
    r = ap.uv_raster(model, S)
    pos, idx = ap.texel_attribute(r, model.vertices(), model.faces)
    lm = model.landmarks_3d(model.vertices(), "ibug68")
    rng = np.random.default_rng(4)
    lab = np.array([65.0, 14.0, 18.0]) + rng.normal(0, [2.0, 0.5, 0.5], (S * S, 3))  # skin, a little texture
    forehead = np.zeros(S * S, bool)
    forehead[idx] = pos[:, 1] > lm[17:27, 1].max() + 0.025
    skin = ap.skin_texels(model, r).ravel()
    on_skin = skin[idx]
    c = pos[on_skin][np.argmin(np.linalg.norm(pos[on_skin] - (lm[3] + lm[48]) / 2, axis=1))]  # a cheek texel
    cheek = np.zeros(S * S, bool)
    cheek[idx] = np.linalg.norm(pos - c, axis=1) < 0.012
    lab[forehead | cheek, 0] -= 45.0  # 3 units at the lightness floor (15)
    tex = lab_to_srgb(lab.astype(np.float32)).reshape(S, S, 3)
    weight = r.mask.astype(np.float32)
    occ = pa.occluder_texels(tex, weight, model, r).ravel()
    assert (cheek & skin).sum() > 20 and (forehead & skin).sum() > 100
    assert occ[forehead & skin].mean() > 0.9
    assert occ[cheek & skin].mean() < 0.1
    assert occ[skin & ~forehead & ~cheek].mean() < 0.05


def test_thin_cut_outs_are_filled_from_the_skin_around_them_and_wide_ones_left_to_the_fill(model):
    """A frame-like line cut out of seen skin (2 texels wide) takes the colour right around it and
    counts as seen; a wide cut-out (a hat band) stays unseen for the mirror and the model."""
    S = 512
    r = ap.uv_raster(model, S)
    cand = pa._occluder_candidates(model, r)
    ys, xs = np.mgrid[0:S, 0:S].astype(np.float32)
    ramp = np.stack([0.3 + 0.4 * xs / (S - 1), np.full_like(xs, 0.5), np.full_like(xs, 0.4)], -1)
    weight = cand.astype(np.float32)
    rows = np.flatnonzero(cand.any(1))
    cols = np.flatnonzero(cand[rows[len(rows) // 2]])
    x_line, cy, cx = cols[6], rows[len(rows) // 2], cols[-1] - 42
    line = cand & (np.abs(xs - x_line) < 1.0)  # 2 texels wide, across the skin
    disc = cand & ((xs - cx) ** 2 + (ys - cy) ** 2 < 40 ** 2)  # 80 texels across (≈ 0.16 of the side)
    weight[line | disc] = 0.0
    albedo = np.where((weight > 0)[..., None], ramp, 0.0).astype(np.float32)
    out, w = pa.patch_thin_holes(albedo, weight, model, r)
    assert line.sum() > 50 and disc.sum() > 2000 and cx - x_line > 40 + 2  # apart
    np.testing.assert_array_equal(w[line], 0.5)  # seen now, at the fill's threshold or above
    np.testing.assert_allclose(out[line], ramp[line], atol=0.01)  # the ramp's own value at the line
    inner = disc & (np.hypot(xs - cx, ys - cy) < 40 - 0.012 * S - 1)
    assert inner.sum() > 100
    np.testing.assert_array_equal(w[inner], 0.0)  # farther than 0.012 of the side from seen skin: left
    np.testing.assert_array_equal(out[weight > 0], albedo[weight > 0])  # the seen texels as they were


def test_too_little_face_is_one_clear_error(model):
    from headveil.common.errors import HeadVeilError

    cam = Camera(np.array([[900.0, 0, 160], [0, 900.0, 160], [0, 0, 1]]), look_at((0, 0, -0.62)), 320, 320)
    photo = np.full((320, 320, 3), 128, np.uint8)
    with pytest.raises(HeadVeilError, match="too little of the face"):
        pa.face_appearance(photo, model, model.vertices(), np.eye(3), np.zeros(3), cam, None, size=256)


def test_a_side_light_is_found_where_the_face_can_tell(model):
    """A frontal face confounds the constant band with light from the camera, but not light from the
    side: the estimated shading of the visible skin follows the true one."""
    from headveil.geometry.normals import vertex_normals

    cam = Camera(np.array([[900.0, 0, 160], [0, 900.0, 160], [0, 0, 1]]), look_at((0, 0, 0.62)), 320, 320)
    v = model.vertices()
    vn = vertex_normals(v, model.faces)
    vis, _ = ap.visibility(v, model.faces, cam, v, vn)
    sel = ap.skin_vertices(model) & (vis > 0.5)
    n_cam = vn[sel] @ cam.w2c[:3, :3].T
    gamma = np.zeros((9, 3))
    gamma[0], gamma[3] = 0.85, -0.3  # light from the image's left
    albedo = model.albedo(None)[sel]
    colors = albedo * (sh_basis(n_cam) @ gamma)
    got = ap.estimate_light(colors, albedo, n_cam, vis[sel])
    true_s, got_s = (sh_basis(n_cam) @ gamma)[:, 0], (sh_basis(n_cam) @ got)[:, 0]
    assert np.corrcoef(true_s, got_s)[0, 1] > 0.95
    assert np.sign(got[3, 0]) == -1


def test_even_albedo_takes_out_broad_residue_and_keeps_fine_lightness(model):
    S = 256
    r = ap.uv_raster(model, S)
    skin = ap.skin_texels(model, r)
    ref_v, idx = ap.texel_attribute(r, model.albedo(), model.faces)
    lab_ref = np.zeros((S * S, 3), np.float32)
    lab_ref[idx] = srgb_to_lab(ref_v.astype(np.float32))
    lab_ref = lab_ref.reshape(S, S, 3)
    ys, xs = np.mgrid[0:S, 0:S].astype(np.float32)
    broad = np.stack([np.zeros_like(xs), 12 * np.sin(xs / S * 2 * np.pi), np.zeros_like(xs)], -1)  # a purple/green sweep
    stripes = np.where((xs.astype(int) // 2) % 2 == 0, 1.0, -1.0)[..., None] * np.array([4.0, 4.0, 0.0])  # period 4 texels
    lab = lab_ref + broad + stripes + np.array([3.0, 0.0, 0.0])  # and a donor 3 L* lighter than the model
    from headveil.common.images import lab_to_srgb

    albedo = np.zeros((S, S, 3), np.float32)
    albedo[r.mask] = np.clip(lab_to_srgb(lab[r.mask].astype(np.float32)), 0, 1)
    out = pa.even_albedo(albedo, model, r, sigma=0.03, chroma=0.25)
    d = srgb_to_lab(out[skin]) - lab_ref[skin]
    st = stripes[skin]
    on, off = st[:, 0] > 0, st[:, 0] < 0
    # the lightness stripes are kept whole, the chroma stripes at a quarter
    assert (d[on, 0].mean() - d[off, 0].mean()) / 8 == pytest.approx(1.0, abs=0.12)
    assert (d[on, 1].mean() - d[off, 1].mean()) / 8 == pytest.approx(0.25, abs=0.08)
    # the broad sweep is gone; the donor's own tone (+3 L*) is kept
    assert np.abs(np.corrcoef(d[:, 1], broad[skin][:, 1])[0, 1]) < 0.15
    assert np.abs(np.corrcoef(srgb_to_lab(albedo[skin])[:, 1] - lab_ref[skin][:, 1], broad[skin][:, 1])[0, 1]) > 0.5  # (it was there)
    assert d[:, 0].mean() == pytest.approx(3.0, abs=0.6)
    np.testing.assert_array_equal(out[~r.mask], albedo[~r.mask])  # uncovered texels untouched


def test_even_albedo_does_not_paint_the_models_own_features_onto_a_donor(model):
    # a donor whose brows are not where the model's painted ones are: a flat skin colour; the
    # model's fine structure (its brows) must not come back in the donor's albedo
    import cv2

    from headveil.common.images import lab_to_srgb

    S = 256
    r = ap.uv_raster(model, S)
    skin = ap.skin_texels(model, r)
    albedo = np.zeros((S, S, 3), np.float32)
    albedo[r.mask] = np.clip(lab_to_srgb(np.array([[65.0, 14.0, 18.0]], np.float32)), 0, 1)
    beta = np.zeros(model.n_albedo)
    beta[list(model.albedo_names).index("brow_darkness")] = 2.5  # the model's brows, dark
    out = pa.even_albedo(albedo, model, r, beta, sigma=0.03, chroma=0.25)
    ref_v, idx = ap.texel_attribute(r, model.albedo(beta), model.faces)
    lab_ref = np.zeros((S * S, 3), np.float32)
    lab_ref[idx] = srgb_to_lab(ref_v.astype(np.float32))
    lab_out = np.zeros((S * S, 3), np.float32)
    lab_out[idx] = srgb_to_lab(out.reshape(-1, 3)[idx])

    brows = ap.texel_mask(model, r, model.regions["brows"])
    w = skin.astype(np.float32)

    def fine(x):  # the part finer than the skin around it, on the model's brow texels
        x = x.reshape(S, S, 3)
        return (x - cv2.GaussianBlur(x * w[..., None], (0, 0), 4) / np.maximum(cv2.GaussianBlur(w, (0, 0), 4), 1e-4)[..., None])[brows]

    ref_fine, out_fine = fine(lab_ref), fine(lab_out)
    assert brows.sum() > 30 and ref_fine[:, 0].mean() < -8  # the model's brows: dark
    assert np.abs(out_fine[:, 0]).mean() < 0.1 * np.abs(ref_fine[:, 0]).mean()
    assert np.abs(out_fine[:, 1:]).mean() < 0.1 * np.abs(ref_fine[:, 1:]).mean() + 0.1


def test_the_coarse_smooth_fill_follows_the_full_pull_push_in_the_holes():
    S = 256
    ys, xs = np.mgrid[0:S, 0:S].astype(np.float32)
    field = np.stack([np.sin(xs / S * np.pi), ys / S, np.full_like(xs, 0.3)], -1).astype(np.float32)  # smooth
    w = np.ones((S, S), np.float32)
    w[60:140, 80:200] = 0
    w[200:230, 10:60] = 0
    holes = w == 0
    full = ap.pull_push_fill(np.where(w[..., None] > 0, field, 5.0), w)
    coarse = ap._smooth_fill(np.where(w[..., None] > 0, field, 5.0), w)
    assert np.abs(coarse[holes] - full[holes]).max() < 0.03
    # a constant stays constant, also across a hole wider than the pyramid's coarsest cells
    np.testing.assert_allclose(full[..., 2], 0.3, atol=1e-5)
    np.testing.assert_allclose(coarse[..., 2], 0.3, atol=1e-5)
    assert np.abs(coarse[~holes] - field[~holes]).max() < 0.03  # (callers keep their seen values)


def _small_face_render(model, texture, f=150.0):
    """The mean head frontal, about 50 px wide, under a flat light: ``(image / coverage, interior)``;
    the interior holds the pixels whose every sample lies on a triangle of the atlas."""
    from headveil.render.rasterize import rasterize

    cam = Camera(np.array([[f, 0, 40], [0, f, 40], [0, 0, 1]]), look_at((0, 0, 0.62)), 80, 80)
    gamma = np.zeros((9, 3))
    gamma[0] = 1.0 / sh_basis(np.array([[0.0, 0.0, 1.0]]))[0, 0]  # Y00 · γ00 = 1: shading 1 everywhere
    img, cov = ap.render_textured(model.vertices(), model.faces, ap.appearance_uv(model), texture, cam, gamma,
                                  uv_ok=ap.uv_triangles(model))
    fi = rasterize(model.vertices(), model.faces, cam.scaled(2)).face_index
    good = np.append(ap.uv_triangles(model) & ap.appearance_triangles(model), False)[fi]  # −1 → False
    inner = good.reshape(80, 2, 80, 2).all(axis=(1, 3)) & (cov > 0.999)
    return img / np.maximum(cov[..., None], 1e-6), inner


def test_a_dense_atlas_is_averaged_to_the_render_not_sampled_into_noise(model):
    """A one-texel checkerboard of 0.2 / 0.8 on a 2048² atlas seen on a face of ~50 px: each pixel
    covers many texels, so it shows their mean (0.5), not whichever texel a sample hit."""
    S = 2048
    ys, xs = np.mgrid[0:S, 0:S]
    tex = np.where((xs + ys) % 2 == 0, 0.2, 0.8).astype(np.float32)[..., None].repeat(3, -1)
    tex[~ap.uv_raster(model, S).mask] = 0.0
    img, inner = _small_face_render(model, tex)
    assert inner.sum() > 500
    vals = img[inner][:, 0]
    assert abs(np.median(vals) - 0.5) < 0.03
    assert vals.std() < 0.05  # sampled without averaging: ±0.3 speckle


def test_the_mip_levels_keep_island_borders_and_leave_sparse_atlases_alone(model):
    S = 2048
    tex = np.zeros((S, S, 3), np.float32)
    tex[ap.uv_raster(model, S).mask] = [0.6, 0.4, 0.3]  # one colour on every island, empty elsewhere
    img, inner = _small_face_render(model, tex)
    # the empty atlas space does not bleed into the islands' borders (eyes, lips, seams)
    np.testing.assert_allclose(img[inner], np.broadcast_to([0.6, 0.4, 0.3], img[inner].shape), atol=0.02)
    small = np.full((64, 64, 3), 0.5, np.float32)
    (lv, w), = mip_levels(small, 100.0)
    assert lv is small and w == 1.0  # sparser than the render: sampled as it is
    (l0, w0), (l1, w1) = mip_levels(small, 32.0 * np.sqrt(2))  # half-way between 64² and 32² (log scale)
    assert l0 is small and l1.shape == (32, 32, 3) and abs(w0 - 0.5) < 1e-9 and abs(w1 - 0.5) < 1e-9
    (l0, w0), (l1, w1) = mip_levels(small, 12.0)  # log2(64 / 12) = 2.415: levels 16² and 8²
    assert l0.shape == (16, 16, 3) and l1.shape == (8, 8, 3) and abs(w1 - (np.log2(64 / 12) - 2)) < 1e-9
    (lv, w), = mip_levels(small, 16.0)  # exactly a level
    assert lv.shape == (16, 16, 3) and w == 1.0
    np.testing.assert_allclose(lv, 0.5)


def test_mip_levels_over_a_uv_box_equal_the_whole_levels_inside_it():
    from headveil.render.mipmap import mip_levels

    rng = np.random.default_rng(0)
    S = 256
    tex = rng.random((S, S, 3), dtype=np.float32)
    tex[rng.random((S, S)) < 0.3] = 0  # scattered empty texels, and empty bands (island borders)
    tex[:, :40] = 0
    tex[150:170] = 0
    for _ in range(60):
        u0, v0 = rng.random(2) * 0.9
        box = (u0, u0 + 0.1 * rng.random(), v0, v0 + 0.1 * rng.random())
        density = rng.uniform(10, 250)
        whole, part = mip_levels(tex, density), mip_levels(tex, density, box)
        assert [w for _, w in whole] == [w for _, w in part]
        uv = np.stack([rng.uniform(box[0], box[1], 300), rng.uniform(box[2], box[3], 300)], 1)
        for (a, _), (b, _) in zip(whole, part):
            np.testing.assert_array_equal(ap.texture_at(a, uv), ap.texture_at(b, uv))
    # computed over the box alone: a small box leaves the rest of a reduced level empty
    (lv, _), = mip_levels(tex, 64.0, (0.1, 0.12, 0.5, 0.52))
    assert lv.shape == (64, 64, 3) and 0 < (lv.max(-1) > 0).sum() < 0.4 * 64 * 64  # the box and its margins


def test_visibility_of_a_few_points_casts_their_rays_alone_with_the_same_weights(model, monkeypatch):
    import headveil.render.appearance as A

    cam = Camera(np.array([[600.0, 0, 160], [0, 600.0, 160], [0, 0, 1]]), look_at((0, 0, 0.62)), 320, 320)
    v = model.vertices()
    n = ap.vertex_normals(v, model.faces)
    few, _ = A.visibility(v, model.faces, cam, v, n)  # 7k vertices, fewer than the window's pixels
    calls = []
    monkeypatch.setattr(A, "depth_at", lambda *a, **k: calls.append(1))  # the raster path, forced
    big = np.repeat(v, 40, 0)
    nb = np.repeat(n, 40, 0)
    many, _ = A.visibility(v, model.faces, cam, big, nb)
    assert not calls
    np.testing.assert_array_equal(few, many[::40])
    assert 0.2 < (few > 0).mean() < 0.8  # the front seen, the back hidden


def test_a_uint8_atlas_reduces_in_its_own_units_as_its_float_copy_does():
    from headveil.render.mipmap import reduce_texture

    rng = np.random.default_rng(1)
    u8 = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    u8[rng.random((128, 128)) < 0.4] = 0
    u8[:, :30] = 0
    u8[5, 40] = (0, 0, 1)  # blue alone is a texel too (a grey of 0.114 rounds to 0 in uint8)
    a, b = reduce_texture(u8, 4), reduce_texture(u8.astype(np.float32) / 255.0, 4)
    assert a.dtype == np.float32 and a.shape == (32, 32, 3)
    np.testing.assert_allclose(a / 255.0, b, rtol=1e-5, atol=1e-6)
    assert a[1, 10, 2] > 0
