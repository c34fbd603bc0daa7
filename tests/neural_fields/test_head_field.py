import numpy as np
import pytest
import torch

from headveil.neural_fields.head_field import HeadField, HeadFieldConfig
from headveil.neural_fields.mesh_sdf import mesh_sdf
from headveil.neural_fields.encodings import resolve_backend

SMALL = HeadFieldConfig()
SMALL.encoding.n_levels, SMALL.encoding.log2_table_size = 4, 12


def test_untrained_field_is_the_model_head(model):
    rng = np.random.default_rng(0)
    alpha = rng.standard_normal(model.n_id).astype(np.float32)
    field = HeadField(model, SMALL, alpha=alpha)
    verts = torch.tensor(model.vertices(alpha), dtype=torch.float32)
    skin = np.flatnonzero(model.part_mask("skin"))
    idx = torch.as_tensor(rng.choice(skin, 200, replace=False))
    on_surface = field.sdf(verts[idx])
    assert on_surface.abs().max() < 1e-6  # the model's own skin vertices lie on the zero level set
    off = verts[idx] + torch.tensor([0.0, 0.0, 0.3])
    base, _ = mesh_sdf(off, field.posed_vertices(), field.faces)
    assert torch.allclose(field.sdf(off), base, atol=1e-6)  # residual starts at exactly 0
    assert field.backend() == resolve_backend("auto")  # the C kernel where it builds


def test_codes_move_the_surface_and_canonical_points_follow(model):
    field = HeadField(model, SMALL)
    rng = np.random.default_rng(1)
    alpha = rng.standard_normal(model.n_id).astype(np.float32) * 2
    v1 = torch.tensor(model.vertices(alpha), dtype=torch.float32)
    field.set_codes(alpha)
    skin = torch.as_tensor(np.flatnonzero(model.part_mask("skin"))[:100])
    assert field.sdf(v1[skin]).abs().max() < 1e-6
    # a point on the posed surface maps to the same surface point of the template
    _, x_c = field.model_sdf(v1[skin])
    assert torch.allclose(x_c, field.template[skin], atol=1e-5)
    with pytest.raises(ValueError, match="finite vector"):
        field.set_codes(np.full(model.n_id + 1, 0.1))


def test_trainable_codes_get_gradients(model):
    field = HeadField(model, SMALL)
    field.set_codes(trainable=True)
    skin = np.flatnonzero(model.part_mask("skin"))[:50]
    x = torch.tensor(model.vertices_mean[skin], dtype=torch.float32) + torch.tensor([0.0, 0.0, 0.01])
    field.sdf(x).sum().backward()
    assert field.alpha.grad is not None and field.alpha.grad.abs().sum() > 0


def test_plain_volsdf_field():
    field = HeadField(config=HeadFieldConfig(prior=False, encoding=SMALL.encoding))
    s, feats = field(torch.zeros(4, 3))
    assert s.shape == (4,) and feats.shape == (4, SMALL.feature_dim) and (s < 0).all()
    with pytest.raises(ValueError, match="needs the morphable model"):
        HeadField(None, HeadFieldConfig(prior=True))


def test_cached_code_sensitivity_predicts_the_sdf_change(model):
    cfg = HeadFieldConfig()
    cfg.encoding.n_levels, cfg.encoding.log2_table_size = 2, 10
    f = HeadField(model, cfg)
    f.cache_prior(28, code_components=3)
    assert f.code_components == 3 and f.alpha.requires_grad
    # points within 2 cm of the mean surface
    v = torch.as_tensor(model.vertices_mean, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    x = v[torch.randint(0, len(v), (400,), generator=g)] + 0.02 * (torch.rand(400, 3, generator=g) - 0.5)
    base0 = f.model_sdf(x)[0].detach()
    with torch.no_grad():
        f.alpha[:3] = torch.tensor([0.8, -0.6, 0.5])
    predicted = f.model_sdf(x)[0]
    predicted.sum().backward()
    assert f.alpha.grad[:3].abs().sum() > 0 and f.alpha.grad[3:].abs().sum() == 0  # only the cached components
    f.recache()  # exact at the new codes (same grid, so interpolation errors cancel in the difference)
    actual = f.model_sdf(x)[0].detach()
    change, err = (actual - base0).abs().mean(), (predicted.detach() - actual).abs().mean()
    assert change > 1e-3  # the codes moved the surface by millimetres
    assert err < 0.25 * change  # first order explains most of it


def test_band_cache_is_exact_where_the_sampler_reads_it(model):
    """A prior cached only around the surface gives the same model SDF as the full cache at every
    point within the band, and a close one (within a coarse cell diagonal) farther out."""
    cfg = HeadFieldConfig()
    cfg.encoding.n_levels, cfg.encoding.log2_table_size = 2, 10
    f = HeadField(model, cfg)
    f.cache_prior(32)
    full = f._prior_grid.clone()
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(20000, 3, generator=g) - 0.5) * 0.44
    s_full = f.model_sdf(x)[0]
    f.cache_prior(32, band=0.03)
    s_band = f.model_sdf(x)[0]
    inside = s_full.abs() < 0.03
    assert inside.sum() > 500
    torch.testing.assert_close(s_band[inside], s_full[inside], rtol=0, atol=0)
    coarse_diag = 3 ** 0.5 * 0.44 / (8 - 1)  # the coarse grid of a 32³ cache has 8 points per side
    assert (s_band - s_full).abs().max() < coarse_diag
    assert not torch.equal(f._prior_grid, full)  # far points really were interpolated
    # the band is part of the cache's identity: a full cache is not taken for a band one
    state = f.prior_cache_state()
    assert state["band"] == 0.03 and state["key"] != f.prior_cache_key(32)
    assert f.load_prior_cache(state, 0.03) and not f.load_prior_cache(state, None)
    f.recache()  # keeps the band
    assert f.prior_cache_state()["band"] == 0.03
    with pytest.raises(ValueError, match="band"):
        f.cache_prior(32, band=0.0)


def test_model_distance_is_the_sdf_channel_of_model_sdf(model):
    cfg = HeadFieldConfig()
    cfg.encoding.n_levels, cfg.encoding.log2_table_size = 2, 10
    f = HeadField(model, cfg)
    x = (torch.rand(500, 3, generator=torch.Generator().manual_seed(2)) - 0.5) * 0.4
    with torch.no_grad():
        torch.testing.assert_close(f.model_distance(x), f.model_sdf(x)[0])  # exact, no cache
        for k in (0, 2):
            f.cache_prior(20, code_components=k)
            f.alpha[:2] = torch.tensor([0.5, -0.4])  # away from the cache's codes: the first-order shift
            torch.testing.assert_close(f.model_distance(x), f.model_sdf(x)[0])
            f.alpha.zero_()
