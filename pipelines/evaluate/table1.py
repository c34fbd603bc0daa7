"""``headveil chep-table``: the CHEP/SBC paper's Table 1 on a synthetic identity database.

Database (§2.1 analogue): ``identities`` synthetic heads (α, β from the model prior, seeded), each
with 8 "photos" (the original model mesh with its albedo at 8 yaw angles: the classifier
training set M) and two targets (neutral and smile: the images CHEP perturbs, set T). Codes are
the subjects' own (the known α of a synthetic subject stands for the fitted one).

Splits (§2.5, Fig. 11) ``(targets, pivots)``: targets are the first identities, pivots the last,
so (180, 20) and (100, 20) share their pivots and (100, 20) and (100, 100) their targets.

Every target image is rendered through the paper's chain — dense mesh, SBC colours from (F, T),
random rotation ρ ~ U[0, π/8]³ (one per identity, shared by all methods), projection F^(2D) —
once with α ("not perturbed") and once per (q, Q) with α' = CHEP(α). Identity classifiers h =
recognizer embeddings + SVM / logistic regression trained on M of the split's targets; the table
holds top-κ accuracies (κ = 5 for the first split, 10 for the others) and the fraction of renders
the recognizer's own detector still finds (utility).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from headveil.common.errors import HeadVeilError
from headveil.pipelines.commands import command

#: The paper's rows: (classifier, λ).
CLASSIFIER_ROWS = (("svm", 1.0), ("logreg_l2_ovr", 1.0), ("logreg_l2_multinomial", 1.0),
                   ("logreg_l1_multinomial", 1.0), ("svm", 10.0), ("logreg_l2_ovr", 10.0))
ROW_NAMES = {"svm": "SVM", "logreg_l2_ovr": "Logistic Reg. (L2 1 vs. all)",
             "logreg_l2_multinomial": "Logistic Reg. (L2 Multinomial)",
             "logreg_l1_multinomial": "Logistic Reg. (L1 Multinomial)"}
EXPRESSIONS = ("neutral", "smile")


@dataclass
class Table1Command:
    """Build the synthetic database, perturb its targets with CHEP, and write Table 1."""

    out: Path = Path("chep_table_out")
    """Output folder (table1.json, table1.md, embeddings, example renders)."""
    identities: int = 200
    """Identities of the synthetic database."""
    splits: tuple[tuple[int, int], ...] = ((180, 20), (100, 20), (100, 100))
    """(targets, pivots) per split; κ = 5 for the first, 10 for the others (paper)."""
    qs: tuple[int, ...] = (2, 10)
    """Values of q (pivots per target) to tabulate."""
    b: float = 2.0
    """CHEP jump factor b."""
    yaws: tuple[float, ...] = (-40.0, -28.0, -16.0, -6.0, 6.0, 16.0, 28.0, 40.0)
    """Yaw angles (degrees) of the 8 classifier-training photos per identity."""
    size: int = 224
    """Side of the projected renders F^(2D), pixels."""
    dense_levels: int = 1
    """Subdivision levels of the dense mesh."""
    bins_from: str = "neutral"
    """SBC source mesh: neutral (paper) or expression."""
    recognizers: tuple[str, ...] = ("dlib", "sface")
    """Recognizers whose embeddings the classifiers use."""
    seed: int = 0
    """Seed of the database."""
    workers: int = 2
    """Worker processes (local) or CPUs of a local Ray runtime; a task is one identity."""
    executor: Literal["local", "ray"] = "local"
    """Where the identities render: local or ray (extra headveil[dist])."""
    ray_address: str | None = None
    """--executor ray: auto or HOST:PORT of a running cluster; none starts a local runtime."""


@dataclass
class _Job:
    identity: int
    cfg: Table1Command
    alpha: np.ndarray
    beta: np.ndarray
    targets_in: list = field(default_factory=list)  # [(config name, pivot codes (Q, K) or None, q)]


def split_ids(cfg: Table1Command) -> dict:
    """``{(T, Q): (target ids, pivot ids)}`` for the configured splits."""
    n = cfg.identities
    out = {}
    for T, Q in cfg.splits:
        if T < 2 or Q < 1 or T + Q > n:
            raise HeadVeilError(f"split ({T}, {Q}) does not fit {n} identities (need T ≥ 2, Q ≥ 1, T + Q ≤ {n})")
        if max(cfg.qs) > Q:
            raise HeadVeilError(f"q = {max(cfg.qs)} exceeds Q = {Q} in split ({T}, {Q})")
        out[(T, Q)] = (list(range(T)), list(range(n - Q, n)))
    return out


def database_codes(cfg: Table1Command, model) -> tuple[np.ndarray, np.ndarray]:
    """Identity ``(N, K)`` and albedo ``(N, A)`` codes of the database (seeded)."""
    A, B = [], []
    for ss in np.random.SeedSequence(cfg.seed).spawn(cfg.identities):
        c = model.sample_codes(np.random.default_rng(ss))
        A.append(c["alpha"])
        B.append(c["beta"])
    return np.stack(A).astype(np.float64), np.stack(B).astype(np.float64)


_WORKER: dict = {}


def _init_worker(names) -> None:
    import torch

    from headveil.geometry.morphable.model import load_embedded
    from headveil.geometry.perception.recognizers import get_recognizer

    torch.set_num_threads(1)
    _WORKER["model"] = load_embedded()
    _WORKER["recs"] = {n: get_recognizer(n) for n in names}
    _WORKER["names"] = tuple(names)


def _identity_task(task) -> list[dict]:
    """One identity's rows (an executor's task); the worker's model and recognizers load once."""
    job, names = task
    if _WORKER.get("names") != tuple(names):
        _init_worker(names)
    return _identity_rows(job)


def _embed_all(img, lm) -> dict:
    out = {}
    for n, rec in _WORKER["recs"].items():
        e = rec.embed(img, lm)
        out[n] = (e.vector.astype(np.float32), bool(e.detected))
    return out


def target_images(model, cfg: Table1Command, identity: int, alpha: np.ndarray, colors: np.ndarray, targets_in):
    """Render one identity's targets T through the paper's chain (dense mesh, SBC colours from
    (F, T), its random rotation ρ, F^(2D)) for every configuration in ``targets_in``.

    Yields ``(expression, config name, image (S, S, 3) uint8, iBUG-68 pixels (68, 2), info)`` with
    ``info`` = ``{"delta_norm": ‖δ‖}`` for perturbed configurations.
    """
    from headveil.geometry.dense import DenseMeshConfig
    from headveil.geometry.identity.chep import CHEPPerturbation, chep_perturb
    from headveil.render.deid.chep import project_2d, random_rotation, sbc_dense_face, source_bins
    from headveil.render.scene import EXPRESSIONS as EXPR_WEIGHTS
    from headveil.render.scene import expression_vector

    width = _face_width(model, model.vertices(alpha))
    _, R = random_rotation(np.random.default_rng(np.random.SeedSequence([cfg.seed, identity, 0xC4E9])))
    dense = DenseMeshConfig(levels=cfg.dense_levels)
    bins = None
    for expr in EXPRESSIONS:
        eta = expression_vector(model, EXPR_WEIGHTS[expr])
        if bins is None or cfg.bins_from == "expression":  # neutral bins are the same for every expression
            bins = source_bins(model, alpha, eta, colors, cfg.bins_from)
        for name, piv, q in targets_in:
            if piv is None:
                a_new, info = alpha, {}
            else:
                res = chep_perturb(alpha, piv, CHEPPerturbation(q=q, b=cfg.b, check_hull=False))
                a_new, info = res.alpha, {"delta_norm": res.delta_norm}
            dv, df, dc, _ = sbc_dense_face(model, a_new, eta, bins, dense, region="head")
            lm = model.landmarks_3d(model.vertices(a_new, eta), "ibug68")
            img, px = project_2d(dv, df, dc, R, cfg.size, face_width=width, points_model=lm)
            yield expr, name, img, px, info


def _face_width(model, v0: np.ndarray) -> float | None:
    """Width (metres) of the face region of neutral vertices ``v0 (V, 3)``: F^(2D) scales it to 1."""
    return float(np.ptp(v0[model.regions["face"], 0])) if "face" in model.regions else None


def _identity_rows(job: _Job) -> list[dict]:
    from headveil.geometry.transforms import rotation_y
    from headveil.render.deid.chep import project_2d

    cfg, i = job.cfg, job.identity
    model = _WORKER["model"]
    a, colors = job.alpha, model.albedo(job.beta)
    rows = []
    v0 = model.vertices(a)
    lm0 = model.landmarks_3d(v0, "ibug68")
    width = _face_width(model, v0)
    for yaw in cfg.yaws:
        img, px = project_2d(v0, model.faces, colors, rotation_y(yaw), cfg.size, face_width=width, points_model=lm0)
        rows.append({"identity": i, "set": "M", "yaw": yaw, "emb": _embed_all(img, px)})
    for expr, name, img, px, info in target_images(model, cfg, i, a, colors, job.targets_in):
        rows.append({"identity": i, "set": "T", "expr": expr, "config": name, "emb": _embed_all(img, px), **info})
        if i == 0 and expr == "neutral":
            from headveil.common.images import write_image

            write_image(Path(cfg.out) / "examples" / f"id0000_{name}.png", img)
    return rows


def target_configs(cfg: Table1Command, alphas: np.ndarray) -> dict[int, list]:
    """Per identity, the target configurations it takes part in: ``[(name, pivots, q)]``."""
    per = {i: [] for i in range(cfg.identities)}
    splits = split_ids(cfg)
    targets_any = sorted({t for ts, _ in splits.values() for t in ts})
    for t in targets_any:
        per[t].append(("none", None, 0))
    done = set()
    for (T, Q), (ts, ps) in splits.items():
        for q in cfg.qs:
            name = f"Q{Q}_q{q}"
            for t in ts:
                if (t, name) not in done:
                    per[t].append((name, alphas[ps], q))
                    done.add((t, name))
    return per


def run_table1(cfg: Table1Command) -> dict:
    """Build the database, embed, train the classifiers and write ``table1.{json,md,html}``."""
    from tqdm import tqdm

    from headveil.common.outputs import atomic_file, build_manifest, write_json, write_text
    from headveil.pipelines.executor import TaskFailure, make_executor
    from headveil.geometry.morphable.model import load_embedded
    from headveil.geometry.perception.recognizers import available_recognizers

    recs = [r for r in cfg.recognizers if r in available_recognizers()]
    if not recs:
        raise HeadVeilError(f"none of the recognizers {cfg.recognizers} is installed (install headveil[faces])")
    model = load_embedded()
    alphas, betas = database_codes(cfg, model)
    per = target_configs(cfg, alphas)
    out = Path(cfg.out)
    (out / "examples").mkdir(parents=True, exist_ok=True)
    jobs = [_Job(i, cfg, alphas[i], betas[i], per[i]) for i in range(cfg.identities)]
    t0 = time.perf_counter()
    by_identity: dict[int, list[dict]] = {}
    with make_executor(cfg.executor, cfg.workers, cfg.ray_address) as ex:
        for i, r in tqdm(ex.run(_identity_task, [(j, tuple(recs)) for j in jobs]), total=len(jobs), desc="identities"):
            if isinstance(r, TaskFailure):
                raise HeadVeilError(f"identity {i} failed twice: {r.error}")
            by_identity[i] = r
    rows = [row for i in sorted(by_identity) for row in by_identity[i]]  # the same order on every executor
    seconds = time.perf_counter() - t0
    import pickle

    with atomic_file(out / "embeddings.pkl") as tmp:  # re-tabulate without re-rendering: tabulate(cfg, rows, recs)
        tmp.write_bytes(pickle.dumps(rows))
    table = tabulate(cfg, rows, recs)
    table["seconds"] = seconds
    write_json(out / "table1.json", table)
    write_text(out / "table1.md", format_markdown(table))
    write_json(out / "manifest.json", build_manifest("headveil chep-table", cfg, seed=cfg.seed, inputs=[],
                                                     backends={"recognizers": recs}))
    return table


def tabulate(cfg: Table1Command, rows: list[dict], recs: list[str]) -> dict:
    """Top-κ accuracies ``{recognizer: {expr: {row label: {column: acc}}}}`` plus detection rates."""
    from headveil.geometry.perception.metrics import fit_identifier, topk_accuracy

    splits = split_ids(cfg)
    result = {"splits": [list(s) for s in cfg.splits], "qs": list(cfg.qs), "recognizers": {}, "detected": {}}
    for rec in recs:
        M = [r for r in rows if r["set"] == "M"]
        T = [r for r in rows if r["set"] == "T"]
        det = {}
        for r in T:
            det.setdefault(r["config"], []).append(r["emb"][rec][1])
        result["detected"][rec] = {k: float(np.mean(v)) for k, v in det.items()}
        per_expr = {expr: {} for expr in EXPRESSIONS}
        for clf_name, lam in CLASSIFIER_ROWS:
            label = f"{ROW_NAMES[clf_name]} λ={lam:g}"
            for expr in EXPRESSIONS:
                per_expr[expr][label] = {}
            for k, ((Tn, Q), (ts, _)) in enumerate(splits.items()):
                kappa = 5 if k == 0 else 10
                tset = set(ts)
                Xg = np.stack([r["emb"][rec][0] for r in M if r["identity"] in tset])
                yg = np.array([r["identity"] for r in M if r["identity"] in tset])
                clf = fit_identifier(Xg, yg, clf_name, lam)  # one classifier per split, every probe set
                for expr in EXPRESSIONS:
                    for name in ["none"] + [f"Q{Q}_q{q}" for q in cfg.qs]:
                        P = [r for r in T if r["expr"] == expr and r["config"] == name and r["identity"] in tset]
                        acc = topk_accuracy(clf, np.stack([r["emb"][rec][0] for r in P]),
                                            np.array([r["identity"] for r in P]), ks=(kappa,))[kappa]
                        per_expr[expr][label][f"({Tn},{Q}) {name} top{kappa}"] = acc
        result["recognizers"][rec] = per_expr
    return result


def format_markdown(table: dict) -> str:
    lines = []
    for rec, per_expr in table["recognizers"].items():
        for expr, rows in per_expr.items():
            cols = list(next(iter(rows.values())))
            lines.append(f"**{rec}, expression {expr}** (top-κ accuracy)\n")
            lines.append("| h | " + " | ".join(c.replace("none", "not perturbed") for c in cols) + " |")
            lines.append("|---|" + "---|" * len(cols))
            for label, r in rows.items():
                lines.append(f"| {rec} + {label} | " + " | ".join(f"{100 * r[c]:.1f}%" for c in cols) + " |")
            lines.append("")
        det = table["detected"][rec]
        lines.append(f"{rec} detector finds the face in: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in det.items()))
        lines.append("")
    return "\n".join(lines)


@command("chep-table", Table1Command)
def _cli(cfg: Table1Command) -> int | None:
    print(format_markdown(run_table1(cfg)))
    print(f"tables in {cfg.out}/table1.json and table1.md")
