"""Restorer registry and contract, photo texture sampling, compositing."""

import numpy as np
import pytest

from headveil.render.composite import composite_face
from headveil.render.restorers import (
    RestoreContext,
    Restorer,
    RestorerError,
    available_restorers,
    get_restorer,
    register_restorer,
    restore,
)


@pytest.fixture()
def scene():
    rng = np.random.default_rng(0)
    H = W = 96
    photo = (rng.uniform(60, 200, (H, W, 3))).astype(np.uint8)
    yy, xx = np.mgrid[:H, :W]
    old = ((xx - 48) ** 2 / 26**2 + (yy - 48) ** 2 / 32**2 <= 1).astype(np.float64)
    new = ((xx - 48) ** 2 / 22**2 + (yy - 50) ** 2 / 30**2 <= 1).astype(np.float64)
    photo[old > 0] = (255, 0, 255)  # the original face: a colour found nowhere else
    render = np.zeros((H, W, 3))
    render[..., 0], render[..., 1], render[..., 2] = 0.8, 0.6, 0.5
    return photo, render, new, old


@pytest.mark.parametrize("blend", ["feather", "multiband"])
def test_composite_removes_every_original_face_pixel(scene, blend):
    import cv2

    photo, render, new, old = scene
    comp = composite_face(photo, render, new, old, blend=blend)
    magenta = np.all(comp.image == (255, 0, 255), axis=-1)
    assert not magenta.any(), "no pixel of the original face may survive"
    assert comp.removed_mask[old > 0].all()
    outside = ~comp.removed_mask
    assert np.array_equal(comp.image[outside], photo[outside])  # hair / background untouched
    # the render shows as it is away from the seam: 4 px in for the feathered mask; the pyramid
    # (3 levels here) spreads the tone step over ≈ 2³ px, so 12 px in
    depth = 9 if blend == "feather" else 25
    core = cv2.erode(new.astype(np.uint8), np.ones((depth, depth), np.uint8)) > 0
    assert core.sum() > 200
    np.testing.assert_allclose(comp.image[core][:, 0].astype(float), 0.8 * 255, atol=1 if blend == "feather" else 2)
    if blend == "multiband":  # and the step is softer: the seam's largest jump is smaller than the feather's
        feather = composite_face(photo, render, new, old, blend="feather").image.astype(float)
        ring = cv2.dilate(new.astype(np.uint8), np.ones((5, 5), np.uint8)) & ~cv2.erode(new.astype(np.uint8),
                                                                                         np.ones((5, 5), np.uint8))
        jump = lambda im: np.abs(np.diff(im[..., 0], axis=1))[ring[:, 1:] > 0].mean()  # noqa: E731
        assert jump(comp.image.astype(float)) < jump(feather)


def test_builtin_restorers_keep_contract(scene):
    photo, render, new, old = scene
    comp = composite_face(photo, render, new, old)
    ctx = RestoreContext.from_mask(comp.face_mask, comp.background)
    assert {"none", "poisson", "inpaint", "color-match", "onnx"} <= set(available_restorers())
    for name in ("none", "poisson", "inpaint", "color-match"):
        out = restore(get_restorer(name), comp.image, ctx)
        assert out.shape == comp.image.shape and out.dtype == np.uint8
        far = np.ones_like(new, bool)
        far[10:-10, 10:-10] = False
        assert np.array_equal(out[far], comp.image[far]), name  # pixels far from the face never change
    assert np.array_equal(restore(get_restorer("none"), comp.image, ctx), comp.image)
    matched = restore(get_restorer("color-match"), comp.image, ctx)
    ring = (comp.background[(new == 0) & ~comp.removed_mask]).mean(0)
    assert np.abs(matched[new > 0].mean(0) - ring).max() < np.abs(comp.image[new > 0].mean(0) - ring).max()


def test_unknown_and_plugin_restorers(scene):
    with pytest.raises(RestorerError, match="unknown restorer"):
        get_restorer("nope")

    class Shift(Restorer):
        name = "test-shift"

        def __call__(self, image, context):
            return image[:-1]  # breaks the contract: wrong size

    register_restorer("test-shift", Shift, replace=True)
    assert "test-shift" in available_restorers()
    img = scene[0]
    ctx = RestoreContext.from_mask(scene[2].astype(np.float32), img)
    with pytest.raises(RestorerError, match="returned"):
        restore(get_restorer("test-shift"), img, ctx)


def _tiny_onnx(path, shape=(1, 3, 32, 32)):
    """A restoration 'model' y = 0.5 x (range [−1, 1] in and out), built with onnx.helper."""
    import onnx
    from onnx import TensorProto, helper

    half = helper.make_tensor("half", TensorProto.FLOAT, [1], [0.5])
    node = helper.make_node("Mul", ["input", "half"], ["output"])
    graph = helper.make_graph([node], "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(shape))], [half])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_onnx_restorer_runs_a_local_model_and_rejects_bad_shapes(tmp_path, scene):
    pytest.importorskip("onnxruntime")
    photo, render, new, old = scene
    comp = composite_face(photo, render, new, old)
    ctx = RestoreContext.from_mask(comp.face_mask, comp.background)
    r = get_restorer("onnx", model=_tiny_onnx(tmp_path / "tiny.onnx"))
    out = restore(r, comp.image, ctx)
    # y = 0.5 x in [−1, 1] pulls every face colour toward mid-grey; outside the face nothing changes
    inside = comp.face_mask > 0.99
    assert np.abs(out[inside].astype(float) - 127.5).mean() < np.abs(comp.image[inside].astype(float) - 127.5).mean()
    assert np.array_equal(out[comp.face_mask == 0], comp.image[comp.face_mask == 0])
    with pytest.raises(RestorerError, match=r"expected \(1, 3, S, S\)"):
        get_restorer("onnx", model=_tiny_onnx(tmp_path / "grey.onnx", (1, 1, 32, 32)))
    with pytest.raises(RestorerError, match="square"):
        get_restorer("onnx", model=_tiny_onnx(tmp_path / "wide.onnx", (1, 3, 32, 48)))
    with pytest.raises(RestorerError, match="not found"):
        get_restorer("onnx", model=tmp_path / "missing.onnx")


def test_photo_colors_follow_the_render(model):
    from headveil.render.scene import HeadPose, SubjectCodes, portrait_camera, render_subject
    from headveil.render.mesh_renderer import render_mesh
    from headveil.render.shading import DirectionalLight
    from headveil.render.texture import sample_photo_colors

    codes = SubjectCodes(np.zeros(model.n_id), np.zeros(model.n_expr), np.zeros(model.n_albedo))
    cam = portrait_camera(128)
    unlit = DirectionalLight((0, 0, 1), 1.0, 0.0)
    res, verts = render_subject(model, codes, HeadPose(), cam, light=unlit)
    colors, visible = sample_photo_colors(res.image, verts, model.faces, cam)
    face = model.regions["face"] & visible & (model.vertex_part == 0)
    assert visible.mean() > 0.2 and face.sum() > 500
    # unlit render of the albedo → the sampled colours are the albedo (bilinear blur at edges aside)
    err = np.abs(colors[face] - model.albedo()[face]).max(1)
    assert np.median(err) < 0.02 and err.mean() < 0.05  # at 128² a pixel spans ~2 mm of face
    assert np.isfinite(colors).all() and colors.min() >= 0 and colors.max() <= 1
    again = render_mesh(verts, model.faces, cam, colors, light=unlit)
    assert np.abs(again.image - res.image)[res.mask > 0.99].mean() < 0.03


def _bands(img, sigmas, mask=None):
    """Luminance bands of ``img``: differences of Gaussians (normalised over ``mask`` when given)."""
    import cv2

    g = np.asarray(img, np.float64) @ np.array([0.299, 0.587, 0.114])
    m = np.ones(g.shape) if mask is None else mask.astype(np.float64)
    out, prev = [], g
    for s in sigmas:
        low = cv2.GaussianBlur(g * m, (0, 0), s) / np.maximum(cv2.GaussianBlur(m, (0, 0), s), 1e-9)
        out.append(prev - low)
        prev = low
    return out


def test_match_detail_brings_each_band_to_the_photos_contrast_and_never_sharpens():
    from headveil.render.composite import match_detail

    import cv2

    H = W = 96
    def texture(amp, seed):
        n = np.random.default_rng(seed).normal(0, 1, (H, W, 1))
        fine, mid = n - cv2.GaussianBlur(n, (0, 0), 1.5)[..., None], cv2.GaussianBlur(n, (0, 0), 2.0)[..., None]
        return np.clip(0.5 + amp * (fine + 3 * mid) * np.array([1.0, 0.9, 0.8]), 0, 1)
    photo = (texture(0.04, 1) * 255 + 0.5).astype(np.uint8)
    render = texture(0.08, 2)  # twice the photo's contrast
    mask = np.zeros((H, W), bool)
    mask[16:80, 16:80] = True
    sig = (0.6, 1.5, 4.0)
    out, ks = match_detail(render, mask, photo, mask, sig)
    assert all(0.4 < k < 0.65 for k in ks)  # about a half, in every band
    for b_out, b_photo in zip(_bands(out, sig, mask), _bands(photo / 255.0, sig)):
        assert b_out[mask].std() == pytest.approx(b_photo[mask].std(), rel=0.2)  # bands overlap a little
    np.testing.assert_array_equal(out[~mask], render[~mask])  # nothing outside the mask changes
    assert abs(out[mask].mean() - render[mask].mean()) < 0.01  # tone and shading are kept
    # a render with less contrast than the photo is left as it is (never sharpened)
    soft = texture(0.01, 3)
    same, ks = match_detail(soft, mask, photo, mask, sig)
    assert ks == [1.0, 1.0, 1.0]
    np.testing.assert_allclose(same, soft, atol=1e-9)
    # too few pixels to compare: unchanged
    tiny = np.zeros((H, W), bool)
    tiny[0, :10] = True
    _, ks = match_detail(render, tiny, photo, mask, sig)
    assert ks == [1.0, 1.0, 1.0]


def test_match_face_tone_moves_the_median_colour_to_the_photos_face_everywhere():
    from headveil.common.images import lab_to_srgb, srgb_to_lab
    from headveil.render.composite import match_face_tone

    H = W = 40
    rng = np.random.default_rng(3)
    lab = np.stack([rng.uniform(55, 65, (H, W)), rng.uniform(10, 16, (H, W)), rng.uniform(14, 20, (H, W))], -1)
    photo = (np.clip(lab_to_srgb(lab.astype(np.float32)), 0, 1) * 255 + 0.5).astype(np.uint8)
    render = np.clip(lab_to_srgb((lab + [8.0, -6.0, 4.0]).astype(np.float32)), 0, 1).astype(np.float64)
    mask = np.zeros((H, W), bool)
    mask[10:30, 10:30] = True
    out, shift = match_face_tone(render, mask, photo, mask)
    np.testing.assert_allclose(shift, [-8.0, 6.0, -4.0], atol=0.6)
    got = np.median(srgb_to_lab(out[mask].astype(np.float32)), 0)
    want = np.median(srgb_to_lab((photo[mask] / 255.0).astype(np.float32)), 0)
    np.testing.assert_allclose(got, want, atol=0.6)
    # the shift applies to the whole render (no edge where the measured interior ends)
    edge = srgb_to_lab(out[0:5, 0:5].reshape(-1, 3).astype(np.float32)) - srgb_to_lab(render[0:5, 0:5].reshape(-1, 3).astype(np.float32))
    np.testing.assert_allclose(edge.mean(0), shift, atol=0.6)
    _, clipped = match_face_tone(render, mask, photo, mask, max_shift=2.0)
    np.testing.assert_allclose(clipped, [-2.0, 2.0, -2.0], atol=1e-6)
    same, none = match_face_tone(render, np.zeros((H, W), bool), photo, mask)
    assert none == [0.0, 0.0, 0.0]
    np.testing.assert_array_equal(same, render)


def test_match_photo_scales_the_interiors_detail_and_leaves_the_rim():
    from headveil.render.deid.face3d import match_photo

    H = W = 80
    rng = np.random.default_rng(4)
    mask = np.zeros((H, W))
    mask[9:71, 9:71] = 0.5  # a partly covered rim …
    mask[10:70, 10:70] = 1.0  # … around a fully covered face
    tex = np.clip(0.5 + rng.normal(0, 0.08, (H, W, 1)) * np.ones(3), 0, 1)
    photo = (np.clip(0.5 + rng.normal(0, 0.02, (H, W, 1)) * np.ones(3), 0, 1) * 255 + 0.5).astype(np.uint8)
    out, info = match_photo(tex * mask[..., None], mask, photo, np.ones((H, W)), None, None)
    plain = out / np.maximum(mask[..., None], 1e-6)
    assert all(k < 0.6 for k in info["contrast_ratios"])  # the render had 4× the photo's contrast
    assert plain[30:50, 30:50].std() < 0.6 * tex[30:50, 30:50].std()  # the interior's detail is scaled down
    rim = mask == 0.5
    assert np.abs(plain[rim] - tex[rim]).max() < 0.02  # the rim keeps its own values (tone shift ≈ 0 here)
    assert abs(info["tone_shift_lab"][0]) < 1.0
