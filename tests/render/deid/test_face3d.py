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
