"""The face submesh a photo-coloured re-render draws (hand-checkable on the embedded model)."""

import numpy as np

from headveil.render.deid.face3d import FEATURE_RINGS, face_submesh, seen_faces


def test_a_photo_coloured_face_drops_the_plain_skin_the_photo_never_saw_and_keeps_its_features(model):
    sub = face_submesh(model)
    every = np.ones(model.n_vertices, bool)
    assert (seen_faces(model, sub, every) == sub.faces).all()  # all seen: all drawn
    kept = seen_faces(model, sub, ~every)  # nothing seen: the features (and the folds around them) alone
    assert 0 < len(kept) < len(sub.faces)
    verts = sub.vertex_index[kept]
    feature = np.zeros(model.n_vertices, bool)
    for name in ("eyes", "brows", "lips", "mouth_interior", "iris"):
        feature |= model.regions.get(name, np.zeros(model.n_vertices, bool))
    lips = np.flatnonzero(model.regions["lips"][sub.vertex_index][sub.faces].all(1))
    assert {tuple(f) for f in sub.faces[lips]} <= {tuple(f) for f in kept}  # the lips stay
    # what stays lies within FEATURE_RINGS rings of a feature (or is not plain skin)
    from headveil.render.texture import vertex_adjacency

    A = vertex_adjacency(model.n_vertices, model.faces)
    near = feature.copy()
    for _ in range(FEATURE_RINGS):
        near |= (A @ near.astype(np.float64)) > 0
    skin = model.part_mask("skin")
    assert (near[verts] | ~skin[verts]).any(1).all()
    # one plain-skin triangle seen at one vertex only is dropped; at two it is drawn
    plain = np.flatnonzero(~near[sub.vertex_index][sub.faces].any(1) & skin[sub.vertex_index][sub.faces].all(1))
    f = sub.faces[plain[0]]

    def drawn(visible):
        return any((g == f).all() for g in seen_faces(model, sub, visible))

    one = np.ones(model.n_vertices, bool)
    one[sub.vertex_index[f[1:]]] = False
    two = np.ones(model.n_vertices, bool)
    two[sub.vertex_index[f[2]]] = False
    assert not drawn(one) and drawn(two)


def test_photo_colours_under_an_occluder_come_from_the_bare_skin_around_it(model):
    from headveil.geometry.camera import Camera, look_at
    from headveil.render.deid.face3d import photo_colors

    cam = Camera(np.array([[600.0, 0, 160], [0, 600.0, 160], [0, 0, 1]]), look_at((0, 0, 0.62)), 320, 320)
    photo = np.zeros((320, 320, 3), np.uint8)
    photo[:] = (200, 150, 120)  # skin
    fringe = np.zeros((320, 320), bool)
    fringe[:130] = True
    photo[fringe] = (30, 20, 10)  # dark hair over the forehead
    v = model.vertices()
    plain, vis = photo_colors(photo, model, v, np.eye(3), np.zeros(3), cam, with_visibility=True)
    kept, vis2 = photo_colors(photo, model, v, np.eye(3), np.zeros(3), cam, with_visibility=True, exclude=fringe)
    uv, _ = cam.project(v)
    under = vis & (uv[:, 1] < 120)  # seen, well inside the fringe
    assert under.sum() > 50 and (vis == vis2).all()  # the surface was seen: it counts as seen
    assert plain[under].mean() < 0.2  # without the mask: the hair's colour
    np.testing.assert_allclose(kept[under].mean(0), np.array([200, 150, 120]) / 255, atol=0.05)  # the skin's
