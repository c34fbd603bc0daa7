"""``headveil anonymize``: measurable attribute privacy over a face set (AnonymousNet in 3D).

Stages (``../shared/papers/anonymousnet.txt`` §4, through the head model):

I.   **Attributes** of every face (:mod:`headveil.geometry.identity.attributes`): shape attributes
     from the fitted identity code, expression attributes from MediaPipe's blendshapes, skin tone
     (ITA) from the de-lit albedo, apparent age/gender (reported only).
II.  **Privacy** of the set on the chosen quasi-identifiers and sensitive attribute (k-anonymity,
     l-diversity, t-closeness, :func:`~headveil.geometry.identity.anonymity.privacy_table`) before;
     new attribute sets that meet the request (:func:`~headveil.geometry.identity.anonymity.assign_attributes`),
     optionally with Algorithm 1's ε perturbation of the sensitive attribute (``--epsilon``,
     :func:`~headveil.geometry.identity.anonymity.perturb`).
III. **Directed synthesis**: each face becomes its equivalence class's mean shape and UV albedo
     (k-Same over the class, every person once however many of its photos the class holds — the
     FaceNet attacker tells them apart — so no output is one person's face), moved along the attribute
     directions to its assigned attribute set (the attributes it was not asked to change keep the
     face's own values), the expression units of changed expression attributes set, the albedo's
     ITA set; rendered at the face's pose under its own light through the natural appearance path
     (occluders kept on top, seams blended) with the re-identification guard.
     Every output is then re-measured: attributes re-estimated from the output photo, the
     privacy table recomputed from them, pose error, dlib/SFace verdicts.

Outputs (owner-only folder): ``release/NNNN.png`` (the photos with every face replaced) and
``release/attributes.json`` (each face's *assigned* attributes, the achieved table) — what may
be shared; ``audit/`` holds what may not: the originals' attribute values, the before table, the
re-measurement (``privacy.json``). ``manifest.json`` beside them. Exit 0 all faces done, 1 some
failed (a face that could not be anonymised is listed and its photo is not released), 3 none.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import tyro

from headveil.common.errors import HeadVeilError
from headveil.common.images import list_images, read_image, write_image
from headveil.common.outputs import atomic_output_dir, build_manifest, write_json
from headveil.pipelines.commands import command
from headveil.pipelines.faces import FaceWindow, fit_in_window, select_faces
from headveil.pipelines.fit import FitConfig

#: Attribute kinds that Stage III can realise (quasi-identifiers and the sensitive attribute must be one).
SYNTHESISABLE = ("shape", "expression", "skin")
#: ITA (degrees) given to a face whose ``light_skin`` is switched (± this around the threshold).
ITA_MARGIN = 12.0
TEXTURE_SIZE = 1024


@dataclass
class AnonymizeCommand:
    """Make a face set k-anonymous, l-diverse and t-close on chosen attributes by re-rendering every face (AnonymousNet in 3D)."""

    images: Annotated[list[Path], tyro.conf.Positional]
    """Image files or folders of images (the face set: every face of every image)."""
    out: Path = Path("anonymize_out")
    """Output folder (release/ to share, audit/ to keep)."""
    k: int = 5
    """k-anonymity: every face shares its quasi-identifier values with at least k − 1 others."""
    l: float = 2.0
    """l-diversity of the sensitive attribute in every class (see --l-kind)."""
    l_kind: Literal["distinct", "entropy"] = "distinct"
    """distinct: l different values per class; entropy: exp(entropy) ≥ l (eq. 3; l = 2 on a yes/no attribute needs exact halves)."""
    t: float = 0.2
    """t-closeness: EMD between a class's sensitive distribution and the whole set's (eq. 5) at most t."""
    quasi: tuple[str, ...] = ("wide_face", "long_face", "wide_mouth")
    """Quasi-identifiers: shape, expression or skin attribute names (README, "Attribute privacy"); the defaults are the three the landmark fit recovers best."""
    sensitive: str = "smiling"
    """The sensitive attribute."""
    epsilon: float = math.inf
    """ε of Algorithm 1's perturbation: after the k/l/t assignment each face's sensitive attribute is released by randomized response (kept with probability e^ε / (1 + e^ε); ε-differential privacy per face); inf (default) releases the assignment as it is. The planned table is computed after it, so l and t may then be missed (reported)."""
    margin: float = 1.5
    """How clear a switched shape attribute is made: threshold ± margin × its spread in the model's prior."""
    keep_margin: float = 1.0
    """How clear a kept shape attribute is made: a face whose estimate lies closer than keep_margin × its spread to the threshold is moved out to that distance on its own side, so that a re-estimate of the release reads the published boolean; 0 keeps every estimate as it is."""
    faces: str = "all"
    """Which faces of a photo: all, largest, or a number N (the N largest)."""
    max_yaw: float = 30.0
    """Faces turned further (degrees) are refused: attributes are estimated within ±30°."""
    guard: Literal["fail", "warn", "off"] = "warn"
    """dlib/SFace re-identification guard on each output: fail (the face counts as failed), warn, off."""
    overwrite: bool = False
    """Write into an existing folder headveil did not make."""
    fit: FitConfig = field(default_factory=FitConfig)
    """How each photo is fitted."""


@dataclass
class _Face:
    path: str
    index: int
    det: object
    fit: object
    photo_fit: object  # the same fit in the photo's own camera (what deid_image takes as a saved fit)
    values: dict
    flags: dict
    albedo: np.ndarray  # (S, S, 3) uint8
    confidence: np.ndarray  # (S, S) uint8
    seen: np.ndarray  # (S, S) uint8: the photo's own view of each texel (occluders 0)
    light: np.ndarray  # (9, 3) SH light of the photo, camera frame
    embedding: np.ndarray | None = None  # the selection attacker's (FaceNet) embedding, to tell people apart


def check_names(cmd: AnonymizeCommand) -> None:
    """Unknown or non-synthesisable attribute names, and bad k / l / t, as one clear error each."""
    from headveil.geometry.identity.attributes import attribute_names

    kinds = attribute_names()
    for name in (*cmd.quasi, cmd.sensitive):
        if name not in kinds:
            raise HeadVeilError(f"unknown attribute {name!r}; known: {', '.join(sorted(kinds))}")
        if kinds[name] not in SYNTHESISABLE:
            raise HeadVeilError(f"{name!r} is an {kinds[name]} attribute (observed, not synthesised); quasi-identifiers "
                                f"and the sensitive attribute must be shape, expression or skin attributes")
    if len(set(cmd.quasi)) != len(cmd.quasi) or not cmd.quasi:
        raise HeadVeilError(f"--quasi must name one or more distinct attributes; got {cmd.quasi}")
    if cmd.sensitive in cmd.quasi:
        raise HeadVeilError(f"{cmd.sensitive!r} cannot be both a quasi-identifier and the sensitive attribute")
    if cmd.k < 2:
        raise HeadVeilError(f"--k must be ≥ 2 (k = 1 is no anonymity); got {cmd.k}")
    if not 1 <= cmd.l:
        raise HeadVeilError(f"--l must be ≥ 1; got {cmd.l}")
    if not 0 <= cmd.t <= 1:
        raise HeadVeilError(f"--t must be in [0, 1]; got {cmd.t}")
    if not cmd.epsilon >= 0:
        raise HeadVeilError(f"--epsilon must be ≥ 0 (inf: no perturbation); got {cmd.epsilon}")
    if cmd.margin <= 0:
        raise HeadVeilError(f"--margin must be > 0; got {cmd.margin}")
    if not cmd.keep_margin >= 0:
        raise HeadVeilError(f"--keep-margin must be ≥ 0; got {cmd.keep_margin}")


def fit_face(img: np.ndarray, det, cmd: AnonymizeCommand, model, source: str):
    """One detected face fitted in its window: ``(window, working copy, detection in it, fit)``."""
    win = FaceWindow.around(det, *img.shape[:2])
    work = win.crop(img)
    det_w = win.detection_in(det, work.shape)
    return win, work, det_w, fit_in_window(work, win, det_w, img.shape[:2], cmd.fit, model, source)


def face_values(work: np.ndarray, det_w, fit, model) -> tuple[dict, object]:
    """Attribute values of one fitted face (see :mod:`headveil.geometry.identity.attributes`) and its
    baked :class:`~headveil.render.photo_appearance.FaceAppearance`."""
    from headveil.geometry.identity.attributes import expression_values, ita_degrees, shape_attributes
    from headveil.geometry.perception import age_gender
    from headveil.render.appearance import skin_texels, uv_raster
    from headveil.render.photo_appearance import face_appearance

    sa = shape_attributes()
    values = dict(zip(sa.names, sa.values(fit.identity).tolist()))
    values.update(expression_values(det_w.blendshapes))
    v = model.vertices(fit.identity, fit.expression)
    app = face_appearance(work, model, v, fit.R, fit.t, fit.camera, fit.albedo, TEXTURE_SIZE, reject_occluders=True)
    skin = skin_texels(model, uv_raster(model, TEXTURE_SIZE)) & (app.confidence > 0.5)
    values["light_skin"] = ita_degrees(app.albedo[skin]) if skin.any() else math.nan
    if age_gender.available():
        ag = age_gender.age_gender_estimator().estimate(work, det_w.box)
        values["apparent_male"], values["apparent_older"] = ag.p_male, ag.age_years
    return values, app


def _flags(values: dict) -> dict:
    from headveil.geometry.identity.attributes import booleans

    return booleans({k: v for k, v in values.items() if np.isfinite(v)})


def collect_faces(paths: list[Path], cmd: AnonymizeCommand, model, failed: dict) -> list[_Face]:
    """Stage I over every face of the inputs (failures go to ``failed``: ``{input: reason}``)."""
    from tqdm import tqdm

    from headveil.geometry.camera import Camera
    from headveil.geometry.perception.recognizers import SELECTION_ATTACKER, get_recognizer, is_available
    from headveil.pipelines.appearances import landmark_row

    attacker = get_recognizer(SELECTION_ATTACKER) if is_available(SELECTION_ATTACKER) else None
    faces = []
    for p in tqdm(paths, desc="anonymize: attributes", unit="image", disable=len(paths) < 2):
        try:
            img = read_image(p)
            H, W = img.shape[:2]
            for k, det in enumerate(select_faces(img, cmd, str(p))):
                if det.size < cmd.fit.min_face_px:
                    failed[f"{p}#face{k + 1}"] = f"face is {det.size:.0f} px, below --fit.min-face-px"
                    continue
                win, work, det_w, fit = fit_face(img, det, cmd, model, str(p))
                pose = fit.pose_dict()
                if max(abs(pose["yaw_deg"]), abs(pose["pitch_deg"])) > cmd.max_yaw:
                    failed[f"{p}#face{k + 1}"] = (f"head turned {pose['yaw_deg']:.0f}° yaw / {pose['pitch_deg']:.0f}° "
                                                  f"pitch, beyond ±{cmd.max_yaw:.0f}° (--max-yaw)")
                    continue
                values, app = face_values(work, det_w, fit, model)
                missing = [n for n in (*cmd.quasi, cmd.sensitive) if not np.isfinite(values.get(n, math.nan))]
                if missing:
                    failed[f"{p}#face{k + 1}"] = f"attribute(s) {missing} could not be measured"
                    continue
                photo_fit = dataclasses.replace(fit, detection=det, camera=Camera(
                    win.full_K(fit.camera.K, work.shape), np.eye(4), W, H))
                to8 = lambda x: (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)  # noqa: E731
                emb = None
                if attacker is not None:  # at the fitted face's own landmarks: a window may hold others
                    emb = attacker.embed_many([work], landmark_row(attacker, model, fit))[0]
                faces.append(_Face(str(p), k, det, fit, photo_fit, values, _flags(values), to8(app.albedo),
                                   to8(app.confidence), to8(app.seen), np.asarray(app.light, np.float64), emb))
        except HeadVeilError as exc:
            failed[str(p)] = str(exc)
    return faces


#: Weight of a class member's completed albedo where it neither saw nor mirrored the texel (its
#: model fill): without it a texel no member saw (a forehead under every member's hat or fringe, a
#: mouth closed in every photo) averaged to black.
CLASS_FLOOR = 0.01


def people_of(faces: list[_Face]) -> np.ndarray | None:
    """Person labels ``(N,)`` of the faces by the selection attacker (faces it matches pairwise are one
    person, :func:`~headveil.geometry.identity.ksame.same_person_groups`); None without FaceNet."""
    if not faces or any(f.embedding is None for f in faces):
        return None
    from headveil.geometry.identity.ksame import same_person_groups
    from headveil.geometry.perception.recognizers import SELECTION_ATTACKER, get_recognizer

    rec = get_recognizer(SELECTION_ATTACKER)
    E = np.stack([f.embedding for f in faces])
    return same_person_groups(rec.distance(E[:, None], E[None]), rec.threshold)


def class_appearances(faces: list[_Face], labels: list[int],
                      people: np.ndarray | None = None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per class: mean fitted α ``(K,)`` and mean albedo ``(S, S, 3) float32``, each member weighted
    by what its photo itself saw of a texel (occluded texels, hair and brims, count ≈ 0) plus 5 % of
    its completed confidence plus :data:`CLASS_FLOOR` (so a texel no member saw still gets the
    mirrored/filled values, never black). With
    ``people (N,)`` (:func:`people_of`) every person counts once in a class, whatever the number of
    its photos there: three photos of one person among five faces would otherwise make the class's
    face 60 % that person's."""
    out = {}
    for c in sorted(set(labels)):
        ix = [i for i, lab in enumerate(labels) if lab == c]
        share = {i: 1.0 / sum(people[j] == people[i] for j in ix) if people is not None else 1.0 for i in ix}
        acc = np.zeros(faces[ix[0]].albedo.shape, np.float32)
        wsum = np.full(faces[ix[0]].albedo.shape[:2] + (1,), 1e-3, np.float32)
        for i in ix:
            f = faces[i]
            w = share[i] * (f.seen.astype(np.float32) + 0.05 * f.confidence.astype(np.float32)
                            + CLASS_FLOOR * 255.0)[..., None] / 255.0
            acc += f.albedo.astype(np.float32) / 255.0 * w
            wsum += w
        alpha = sum(share[i] * np.asarray(faces[i].fit.identity, np.float64) for i in ix) / sum(share.values())
        out[c] = (alpha, acc / wsum)
    return out


def directed_codes(face: _Face, assigned: dict, changed: list[str], base_alpha: np.ndarray, model,
                   margin: float, keep_margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Stage III codes of one face: ``(α' (K,), η' (E,))`` — the class's mean α moved so that the
    geometric estimator reads, for every changed shape attribute, a clear value of the assigned
    boolean (threshold ± ``margin`` × spread) and, for every other one, the face's own estimate (the
    through-the-fit estimator on its fitted α: what its published boolean was read from), moved out
    to threshold ± ``keep_margin`` × spread on its own side when it lies closer (a re-estimate of
    the release then keeps the boolean); η with the changed expression attributes set."""
    from headveil.geometry.identity.attributes import EXPRESSION_ATTRIBUTES, shape_attributes

    sa = shape_attributes()
    own = sa.values(face.fit.identity)

    def kept(i: int, n: str) -> float:
        flag = bool(own[i] > sa.threshold[i])
        edge = sa.target_value(n, flag, keep_margin)
        return float(max(own[i], edge) if flag else min(own[i], edge))

    targets = {n: (sa.target_value(n, bool(assigned[n]), margin) if n in changed else kept(i, n))
               for i, n in enumerate(sa.names)}
    alpha = sa.move(base_alpha, targets)
    eta = np.asarray(face.fit.expression, np.float32).copy()
    for n in changed:
        if n in EXPRESSION_ATTRIBUTES:
            a = EXPRESSION_ATTRIBUTES[n]
            for unit, v in (a.on if assigned[n] else a.off).items():
                if unit in model.expr_names:
                    eta[model.expr_names.index(unit)] = v
    return alpha, eta


def _albedo_for(face: _Face, class_albedo: np.ndarray, assigned: dict, changed: list[str], model) -> np.ndarray:
    """The class albedo in the face's own skin tone (CIELAB mean and spread on the skin it saw,
    :func:`~headveil.render.tone.match_tone`), then, if ``light_skin`` was switched, its ITA set
    to a clear value of the assigned side."""
    from headveil.geometry.identity.attributes import LIGHT_SKIN_ITA, ita_degrees, shift_ita, srgb_to_lab
    from headveil.render.appearance import skin_texels, uv_raster
    from headveil.render.tone import match_tone

    skin = skin_texels(model, uv_raster(model, class_albedo.shape[0]))
    class_albedo = match_tone(class_albedo, face.albedo.astype(np.float32) / 255.0, skin,
                              face.seen.astype(np.float32) / 255.0)
    if "light_skin" not in changed:
        return class_albedo
    cur = ita_degrees(class_albedo[skin])
    b = float(np.median(srgb_to_lab(class_albedo[skin])[:, 2]))
    want = LIGHT_SKIN_ITA + (ITA_MARGIN if assigned["light_skin"] else -ITA_MARGIN)
    if abs(want - cur) < 0.5:
        return class_albedo
    return shift_ita(class_albedo, cur, want, b).astype(np.float32)


def run_anonymize(cmd: AnonymizeCommand, model=None) -> dict:
    """``headveil anonymize`` (see the module docstring). Returns the summary written to ``audit/privacy.json``."""
    from headveil.geometry.identity.anonymity import assign_attributes, equivalence_classes, privacy_table
    from headveil.geometry.morphable.model import load_embedded
    from headveil.pipelines.deid import DeidCommand, deid_image, _prepare
    from tqdm import tqdm

    from headveil.render.appearance import NewAppearance

    t0 = time.perf_counter()
    model = model or load_embedded()
    check_names(cmd)
    paths = list_images(cmd.images)
    if not paths:
        raise HeadVeilError(f"no images found in {', '.join(map(str, cmd.images))}")
    failed: dict = {}
    faces = collect_faces(paths, cmd, model, failed)
    names = [*cmd.quasi, cmd.sensitive]
    if len(faces) < 2:
        raise HeadVeilError(f"a set of {len(faces)} usable face(s) cannot be anonymised: k-anonymity needs at least "
                            f"two faces" + (f" ({len(failed)} input(s) failed: {next(iter(failed.values()))})"
                                            if failed else ""))
    if cmd.k > len(faces):
        raise HeadVeilError(f"k-anonymity: --k {cmd.k} is larger than the set ({len(faces)} usable faces)")
    records = [{n: f.flags[n] for n in names} for f in faces]
    before = privacy_table(records, cmd.quasi, cmd.sensitive, cmd.k, cmd.l, cmd.t, cmd.l_kind)
    assignment = assign_attributes(records, cmd.quasi, cmd.sensitive, cmd.k, cmd.l, cmd.t, cmd.l_kind)
    perturbed = 0
    if math.isfinite(cmd.epsilon):  # Algorithm 1's Perturbation(A', ε), fresh OS entropy
        from headveil.geometry.identity.anonymity import perturb

        new = perturb(assignment.records, [cmd.sensitive], cmd.epsilon, np.random.default_rng())
        perturbed = sum(a[cmd.sensitive] != b[cmd.sensitive] for a, b in zip(assignment.records, new))
        assignment = dataclasses.replace(assignment, records=new, changed=[
            [n for n in names if bool(r[n]) != bool(o[n])] for r, o in zip(new, records)])
    planned = privacy_table(assignment.records, cmd.quasi, cmd.sensitive, cmd.k, cmd.l, cmd.t, cmd.l_kind)
    classes = equivalence_classes(assignment.records, cmd.quasi)
    label = {i: c for c, ix in enumerate(classes.values()) for i in ix}
    people = people_of(faces)
    apps = class_appearances(faces, [label[i] for i in range(len(faces))], people)
    dcmd = DeidCommand([], method="directed:render=donor", guard=cmd.guard, max_yaw=cmd.max_yaw, fit=cmd.fit, faces=cmd.faces)
    spec, params, _, restorer, recognizers = _prepare(dcmd, model)
    per_image: dict[str, list[int]] = {}
    for i, f in enumerate(faces):
        per_image.setdefault(f.path, []).append(i)
    results: dict[int, dict] = {}
    released: dict[str, str] = {}
    with atomic_output_dir(cmd.out, cmd.overwrite, private=True) as tmp:
        (tmp / "release").mkdir()
        (tmp / "audit").mkdir()
        for n_img, (p, ix) in enumerate(tqdm(per_image.items(), desc="anonymize: synthesis", unit="image",
                                             disable=len(per_image) < 2)):
            original = read_image(p)
            img = original.copy()
            ok = not any(key.startswith(f"{p}#face") for key in failed)  # a face left as it was: not released
            for i in ix:
                f, rec, ch = faces[i], assignment.records[i], assignment.changed[i]
                base_alpha, class_alb = apps[label[i]]
                alpha, eta = directed_codes(f, rec, ch, base_alpha, model, cmd.margin, cmd.keep_margin)
                app = NewAppearance(_albedo_for(f, class_alb, rec, ch, model), f.light, None, 0.0,
                                    f"class of {len(classes[tuple(rec[q] for q in cmd.quasi)])}")
                try:
                    img, _, _, record, _ = deid_image(img, dcmd, model, spec, params,
                                                      {"directed": {"alpha": alpha, "eta": eta}, "appearance": app},
                                                      restorer, recognizers, p, saved=f.photo_fit, original=original,
                                                      face=f"face{f.index + 1}")
                except HeadVeilError as exc:
                    failed[f"{p}#face{f.index + 1}"] = str(exc)
                    ok = False
                    continue
                results[i] = {"reidentified_by": record.reidentified_by, "not_detected_by": record.not_detected_by,
                              "dis": {n: v.get("dis_aligned") for n, v in (record.reidentification or {}).items()},
                              "window": record.window}
            if not ok:
                continue  # a photo with a face left as it was is never released
            name = f"{n_img + 1:04d}.png"
            write_image(tmp / "release" / name, img)
            released[p] = name
        remeasured = remeasure(tmp / "release", released, faces, per_image, cmd, model, results)
        after_records = [remeasured[i]["flags"] for i in sorted(remeasured) if remeasured[i]["flags"] is not None]
        after = (privacy_table([{n: r[n] for n in names} for r in after_records], cmd.quasi, cmd.sensitive, cmd.k,
                               cmd.l, cmd.t, cmd.l_kind) if after_records and all(
            n in r for r in after_records for n in names) else None)
        fidelity = attribute_fidelity(faces, assignment, remeasured, names)
        release_attrs = {"faces": [{"image": released[faces[i].path], "face": faces[i].index + 1,
                                    "attributes": {n: bool(assignment.records[i][n]) for n in names}}
                                   for i in sorted(results) if faces[i].path in released],
                         "privacy_table": _table_json(planned), "quasi_identifiers": list(cmd.quasi),
                         "sensitive": cmd.sensitive}
        write_json(tmp / "release" / "attributes.json", release_attrs)
        summary = {
            "faces": len(faces), "images_released": len(released), "faces_released": len(release_attrs["faces"]),
            # different people among the faces to the selection attacker (each counts once in its class's face)
            "people": None if people is None else int(len(set(people.tolist()))),
            "failed": failed,
            "before": _table_json(before), "planned": _table_json(planned),
            "achieved_remeasured": _table_json(after) if after is not None else None,
            "merges": assignment.merges, "fidelity": fidelity,
            "epsilon": None if math.isinf(cmd.epsilon) else cmd.epsilon, "perturbed": perturbed,
            "reidentified": {n: int(sum(n in r["reidentified_by"] for r in results.values())) for n in recognizers},
            "pose_error_deg": _mean([r.get("pose_error_deg") for r in remeasured.values()]),
            "faces_detail": [{"image": Path(faces[i].path).name, "face": faces[i].index + 1,
                              "release": released.get(faces[i].path), "values": faces[i].values,
                              "original": faces[i].flags, "assigned": assignment.records[i],
                              "changed": assignment.changed[i], "remeasured": remeasured.get(i, {}).get("flags"),
                              **{k: results[i][k] for k in ("reidentified_by", "not_detected_by", "dis", "window")
                                 if i in results}}
                             for i in range(len(faces))],
            "seconds": time.perf_counter() - t0,
        }
        write_json(tmp / "audit" / "privacy.json", summary, private=True)
        write_json(tmp / "manifest.json", build_manifest("headveil anonymize", cmd, None, paths,
                                                         extra={"attribute_asset": "headveil_head_attributes.npz"}))
    return {**summary, "out": str(cmd.out)}


def _mean(xs):
    xs = [x for x in xs if x is not None and np.isfinite(x)]
    return float(np.mean(xs)) if xs else None


def _table_json(tab) -> dict:
    return {**dataclasses.asdict(tab), "met": tab.met}


def remeasure(release: Path, released: dict, faces: list[_Face], per_image: dict, cmd, model, results: dict) -> dict:
    """Attributes, pose error re-estimated from the released photos: ``{face index: {...}}``."""
    from headveil.geometry.perception.detectors import detect_faces

    out = {}
    for p, name in released.items():
        img = read_image(release / name)
        found = detect_faces(img, cmd.fit.detector, cmd.fit.max_side)
        for i in per_image[p]:
            if i not in results:
                continue
            f = faces[i]
            c = np.asarray(f.det.box, float).reshape(2, 2).mean(0)
            near = [d for d in found
                    if np.linalg.norm(np.asarray(d.box, float).reshape(2, 2).mean(0) - c) < 0.35 * f.det.size]
            if not near:
                out[i] = {"flags": None, "detected": False}
                continue
            try:
                _, work, det_w, fit = fit_face(img, near[0], cmd, model, name)
                values, _ = face_values(work, det_w, fit, model)
            except HeadVeilError:
                out[i] = {"flags": None, "detected": True}
                continue
            pa, pb = fit.pose_dict(), f.fit.pose_dict()
            err = max(abs(pa[k] - pb[k]) for k in ("yaw_deg", "pitch_deg", "roll_deg"))
            out[i] = {"flags": _flags(values), "detected": True, "pose_error_deg": float(err)}
    return out  # a face that could not be re-measured has flags None (the re-measured table leaves it out)


def attribute_fidelity(faces, assignment, remeasured: dict, names: list[str]) -> dict:
    """Share of (face, attribute) pairs whose re-estimated boolean equals the assigned one, split
    into the attributes asked to change and those that were not (over every re-measured face)."""
    changed_ok = changed_n = kept_ok = kept_n = 0
    per_attr: dict = {}
    per_kept: dict = {}
    for i, r in remeasured.items():
        flags = r["flags"]
        if flags is None:
            continue
        for n, v in flags.items():
            if n.startswith("apparent"):
                continue
            want = assignment.records[i][n] if n in names else faces[i].flags.get(n)
            if want is None:
                continue
            hit = bool(v) == bool(want)
            d = per_attr.setdefault(n, [0, 0])
            d[0] += hit
            d[1] += 1
            if n in assignment.changed[i]:
                changed_ok += hit
                changed_n += 1
            else:
                kept_ok += hit
                kept_n += 1
                k = per_kept.setdefault(n, [0, 0])
                k[0] += hit
                k[1] += 1
    return {"changed_realised": changed_ok / changed_n if changed_n else None, "changed_pairs": changed_n,
            "unchanged_kept": kept_ok / kept_n if kept_n else None, "unchanged_pairs": kept_n,
            "per_attribute": {n: d[0] / d[1] for n, d in per_attr.items()},
            "unchanged_kept_per_attribute": {n: d[0] / d[1] for n, d in per_kept.items()},
            "faces_remeasured": sum(r["flags"] is not None for r in remeasured.values()),
            "faces_not_redetected": sum(not r["detected"] for r in remeasured.values())}


@command("anonymize", AnonymizeCommand)
def _cli_anonymize(cfg: AnonymizeCommand) -> int:
    from headveil.pipelines.commands import batch_status

    res = run_anonymize(cfg)
    a = res["achieved_remeasured"]
    print(f"anonymised {res['faces']} face(s) of {res['images_released']} image(s) into {res['out']}/release/ "
          f"in {res['seconds']:.1f} s; planned k={res['planned']['k_anonymity']['achieved']}, "
          f"l={res['planned']['l_diversity'].get('achieved')}, t={res['planned']['t_closeness'].get('achieved'):.3f}"
          + (f"; re-measured k={a['k_anonymity']['achieved']}, met={a['met']}" if a else ""))
    if res["failed"]:
        print(f"{len(res['failed'])} face(s)/input(s) failed (audit/privacy.json)")
    return batch_status(res["faces_released"], len(res["failed"]))
