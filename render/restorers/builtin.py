"""Built-in restorers: none, poisson, inpaint, color-match."""

from __future__ import annotations

import numpy as np

from headveil.render.restorers.base import RestoreContext, Restorer, register_restorer


class NoneRestorer(Restorer):
    """Returns the image unchanged."""

    name = "none"

    def __call__(self, image, context):
        return image


class PoissonRestorer(Restorer):
    """OpenCV seamless clone (Poisson blending) of the face into the face-free background."""

    name = "poisson"

    def __init__(self, mode: str = "normal"):
        import cv2

        self.flag = {"normal": cv2.NORMAL_CLONE, "mixed": cv2.MIXED_CLONE}[mode]

    def __call__(self, image, context: RestoreContext):
        import cv2

        m = (context.face_mask > 0.5).astype(np.uint8) * 255
        m = cv2.erode(m, np.ones((3, 3), np.uint8))
        if m.sum() < 255 * 16:
            return image
        ys, xs = np.nonzero(m)
        H, W = m.shape
        # seamlessClone needs the mask's box strictly inside the image
        if xs.min() < 1 or ys.min() < 1 or xs.max() > W - 2 or ys.max() > H - 2:
            m[[0, -1], :] = 0
            m[:, [0, -1]] = 0
            ys, xs = np.nonzero(m)
        x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
        center = (int((x0 + x1 + 1) // 2), int((y0 + y1 + 1) // 2))
        out = cv2.seamlessClone(np.ascontiguousarray(image[..., ::-1]),
                                np.ascontiguousarray(context.background[..., ::-1]), m, center, self.flag)
        return out[..., ::-1].copy()


class InpaintRestorer(Restorer):
    """Re-fills a band of ``band_px`` pixels along the face seam by inpainting (hides seams)."""

    name = "inpaint"

    def __init__(self, band_px: int = 3, method: str = "telea"):
        self.band_px, self.method = int(band_px), method

    def __call__(self, image, context: RestoreContext):
        import cv2

        from headveil.render.composite import inpaint_region

        m = (context.face_mask > 0.5).astype(np.uint8)
        k = np.ones((2 * self.band_px + 1,) * 2, np.uint8)
        band = cv2.dilate(m, k).astype(bool) & ~cv2.erode(m, k).astype(bool)
        return inpaint_region(image, band, radius=self.band_px + 2, method=self.method)


class ColorMatchRestorer(Restorer):
    """Matches mean and std of the face (Lab) to a ring of surrounding pixels of the background."""

    name = "color-match"

    def __init__(self, ring_px: int = 12, strength: float = 1.0):
        self.ring_px, self.strength = int(ring_px), float(strength)

    def __call__(self, image, context: RestoreContext):
        import cv2

        face = context.face_mask > 0.5
        if face.sum() < 16:
            return image
        k = np.ones((2 * self.ring_px + 1,) * 2, np.uint8)
        ring = cv2.dilate(face.astype(np.uint8), k).astype(bool) & ~face
        if ring.sum() < 16:
            return image
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float64)
        ref = cv2.cvtColor(context.background, cv2.COLOR_RGB2LAB).astype(np.float64)
        mu_f, sd_f = lab[face].mean(0), lab[face].std(0) + 1e-6
        mu_r, sd_r = ref[ring].mean(0), ref[ring].std(0) + 1e-6
        matched = (lab - mu_f) * (sd_r / sd_f) + mu_r
        w = self.strength * context.face_mask[..., None]
        out = lab + w * (matched - lab)
        rgb = cv2.cvtColor(np.clip(out + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
        return np.where(context.face_mask[..., None] > 0, rgb, image)  # Lab round trips are lossy: touch the face only


register_restorer("none", NoneRestorer)
register_restorer("poisson", PoissonRestorer)
register_restorer("inpaint", InpaintRestorer)
register_restorer("color-match", ColorMatchRestorer)
