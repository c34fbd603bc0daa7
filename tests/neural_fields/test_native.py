"""The hash grid's C kernel (backend ``native``) against the torch kernel and the autograd oracle."""

import logging

import pytest
import torch

from headveil.common.errors import BackendUnavailableError
from headveil.neural_fields import native
from headveil.neural_fields.encodings import (
    HashGridConfig,
    HashGridEncoding,
    _HashLookup,
    _PointGradient,
    hash_encode_reference,
    resolve_backend,
)

needs_native = pytest.mark.skipif(not native.available(), reason="no C compiler here")

# resolutions 2, 4, 8, 16: two dense levels, two hashed into 512 rows
SMALL = dict(n_levels=4, n_features=2, log2_table_size=9, base_resolution=2, per_level_scale=2.0,
             bbox=(-1, -1, -1, 1, 1, 1), init_scale=1.0)


def _pair(**cfg):
    ref = HashGridEncoding(HashGridConfig(**cfg, backend="torch"))
    nat = HashGridEncoding(HashGridConfig(**cfg, backend="native"))
    nat.load_state_dict(ref.state_dict())  # one table layout: parameters are interchangeable
    return ref, nat


def _points(n, seed, lo=-1.2, hi=1.2):
    x = torch.rand(n, 3, generator=torch.Generator().manual_seed(seed)) * (hi - lo) + lo
    x[0], x[1], x[2] = -1.0, 1.0, torch.tensor([0.5, -3.0, 7.0])  # both box faces; outside on two axes
    return x


@needs_native
@pytest.mark.parametrize("cfg", [SMALL, dict(SMALL, n_features=1), dict(SMALL, n_features=4, n_levels=6),
                                 dict(log2_table_size=12, bbox=(-0.15, -0.15, -0.15, 0.15, 0.15, 0.15))])
def test_native_matches_the_torch_kernel(cfg):
    ref, nat = _pair(**cfg)
    assert nat.backend == "native"
    scale = max(cfg["bbox"][3:]) if "bbox" in cfg else 1.0
    x = _points(3000, 0) * scale
    xr, xn = x.clone().requires_grad_(), x.clone().requires_grad_()
    fr, fn = ref(xr), nat(xn)
    assert fn.shape == fr.shape == (3000, ref.out_dim) and fn.dtype == torch.float32
    assert torch.allclose(fn, fr, atol=1e-6, rtol=1e-5)  # same float32 arithmetic, same order
    g = torch.randn(fr.shape, generator=torch.Generator().manual_seed(1))
    gr = torch.autograd.grad((fr * g).sum(), [xr, ref.table])
    gn = torch.autograd.grad((fn * g).sum(), [xn, nat.table])
    assert torch.allclose(gn[1], gr[1], atol=1e-5, rtol=1e-5)  # table: the adds in another order
    assert torch.allclose(gn[0], gr[0], atol=1e-4, rtol=1e-4)  # points, with the box's clamp
    assert gn[0][2, 1] == 0 and gn[0][2, 2] == 0 and gn[0][2, 0] != 0  # clamped axes carry no gradient


@needs_native
def test_native_gradients_match_the_oracle_in_double_the_cells():
    """The oracle is autograd through :func:`hash_encode_reference`; the kernel is float32, so the
    comparison is at float32 round-off, on points away from cell faces (the derivative jumps there)."""
    torch.manual_seed(4)
    ref, nat = _pair(**SMALL)
    u = (torch.randint(0, 32, (200, 3)).float() + 0.25 + 0.5 * torch.rand(200, 3)) / 32
    x = u * 2 - 1
    xn = x.clone().requires_grad_()
    fn = nat(xn)
    xo = x.clone().requires_grad_()
    fo = hash_encode_reference(ref.normalise(xo), ref.table, ref.levels, 2)
    assert torch.allclose(fn, fo, atol=1e-6)
    g = torch.randn(fn.shape)
    gn = torch.autograd.grad((fn * g).sum(), [xn, nat.table])
    go = torch.autograd.grad((fo * g).sum(), [xo, ref.table])
    assert torch.allclose(gn[0], go[0], atol=1e-4, rtol=1e-4) and torch.allclose(gn[1], go[1], atol=1e-5)


@needs_native
def test_native_passes_compute_only_what_they_are_asked_for():
    _, nat = _pair(**SMALL)
    x = _points(100, 2).requires_grad_()
    feats = nat(x)
    n_table, n_point = _HashLookup.backward_calls, _PointGradient.backward_calls
    (g,) = torch.autograd.grad(feats.sum(), x, retain_graph=True)
    assert (_HashLookup.backward_calls, _PointGradient.backward_calls) == (n_table, n_point + 1)
    assert nat.table.grad is None
    torch.autograd.backward((feats ** 2).sum(), inputs=[nat.table])
    assert (_HashLookup.backward_calls, _PointGradient.backward_calls) == (n_table + 1, n_point + 1)
    assert x.grad is None and nat.table.grad is not None


@needs_native
def test_native_table_gradient_does_not_depend_on_the_thread_count():
    _, nat = _pair(log2_table_size=10, n_levels=8, base_resolution=4)
    x = _points(20000, 5)
    threads = torch.get_num_threads()
    grads = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            nat.table.grad = None
            (nat(x) ** 2).mean().backward()
            grads.append(nat.table.grad.clone())
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[0], grads[2])  # each level's adds on one thread


@needs_native
def test_native_point_gradient_sees_an_in_place_table_update():
    _, nat = _pair(**SMALL)
    x = _points(10, 3).requires_grad_()
    feats = nat(x)
    with torch.no_grad():
        nat.table.add_(1.0)  # an optimiser step between the forward and the normals' backward
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        torch.autograd.grad(feats.sum(), x)


@needs_native
def test_native_falls_back_to_the_torch_kernel_for_other_devices_and_dtypes():
    ref, nat = _pair(**SMALL)
    x = _points(50, 6).double()
    assert torch.allclose(nat.double()(x), ref.double()(x))


def test_native_kernel_off_or_unbuildable(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("HEADVEIL_CACHE", str(tmp_path))
    native.library.cache_clear()
    try:
        monkeypatch.setenv("HEADVEIL_NATIVE", "0")
        assert not native.available() and resolve_backend("auto") in ("torch", "tcnn")
        with pytest.raises(BackendUnavailableError, match="C compiler"):
            resolve_backend("native")
        native.library.cache_clear()
        monkeypatch.delenv("HEADVEIL_NATIVE")
        monkeypatch.setenv("CC", "false")  # a compiler that fails: one warning, the torch kernel
        with caplog.at_level(logging.WARNING, logger="headveil.neural_fields.native"):
            assert native.library() is None
        assert "could not be built" in caplog.text and not list(tmp_path.rglob("*.so"))
    finally:
        native.library.cache_clear()


@needs_native
def test_native_build_is_cached_by_source_and_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("HEADVEIL_CACHE", str(tmp_path))
    native.library.cache_clear()
    try:
        assert native.library() is not None
        built = list((tmp_path / "kernels").glob("hashgrid-*.so"))
        assert len(built) == 1 and built[0] == native.library_path(native.compiler())
        assert not [p for p in (tmp_path / "kernels").iterdir() if p not in built]  # no temp file left
    finally:
        native.library.cache_clear()


@needs_native
def test_native_takes_an_empty_batch():
    _, nat = _pair(**SMALL)
    x = torch.zeros(0, 3, requires_grad=True)
    feats = nat(x)
    assert feats.shape == (0, nat.out_dim)
    (g,) = torch.autograd.grad(feats.sum(), x, retain_graph=True)
    feats.sum().backward()
    assert g.shape == (0, 3) and nat.table.grad.abs().sum() == 0
