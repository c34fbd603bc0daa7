"""Privacy metrics of a face set on a six-record table whose values are worked out by hand."""

import math

import numpy as np
import pytest

from headveil.geometry.identity.anonymity import (
    AnonymityError,
    earth_movers_distance,
    entropy,
    equivalence_classes,
    k_anonymity,
    l_diversity,
    privacy_table,
    randomize,
    t_closeness,
)

FACES = [
    {"glasses": True, "nose": "big", "smile": True, "age": 30},
    {"glasses": True, "nose": "big", "smile": False, "age": 40},
    {"glasses": True, "nose": "big", "smile": True, "age": 50},
    {"glasses": False, "nose": "small", "smile": False, "age": 30},
    {"glasses": False, "nose": "small", "smile": False, "age": 30},
    {"glasses": False, "nose": "big", "smile": True, "age": 60},
]


def test_equivalence_classes_and_k():
    assert equivalence_classes(FACES, ["glasses", "nose"]) == {(True, "big"): [0, 1, 2], (False, "small"): [3, 4],
                                                              (False, "big"): [5]}
    assert k_anonymity(FACES, ["glasses", "nose"]) == 1  # record 5 is alone
    assert k_anonymity(FACES, ["glasses"]) == 3


def test_l_diversity_distinct_and_entropy():
    # each glasses class holds two smiles and one non-smile (or the reverse): 2 distinct values,
    # entropy −(⅔ ln ⅔ + ⅓ ln ⅓) = 0.6365, so l = e^0.6365 = 1.8899
    h = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert entropy([True, False, True]) == pytest.approx(h)
    assert l_diversity(FACES, ["glasses"], "smile", "distinct") == 2
    assert l_diversity(FACES, ["glasses"], "smile") == pytest.approx(math.exp(h))
    assert l_diversity(FACES, ["glasses", "nose"], "smile", "distinct") == 1  # (False, small): never smiling


def test_t_closeness_categorical_and_ordered():
    # smile overall ½ / ½; in each glasses class ⅔ / ⅓: EMD = ½ (⅙ + ⅙) = ⅙
    assert t_closeness(FACES, ["glasses"], "smile") == pytest.approx(1 / 6)
    # age, ordered over 30 < 40 < 50 < 60: cumulative differences −⅙, 0, ⅙, 0 → ⅓ / (4 − 1) = 1/9
    assert t_closeness(FACES, ["glasses"], "age") == pytest.approx(1 / 9)
    assert earth_movers_distance({0: 1.0}, {3: 1.0}) == pytest.approx(1.0)  # the whole range, ordered
    assert earth_movers_distance({"a": 1.0}, {"b": 1.0}) == pytest.approx(1.0)


def test_privacy_table_reports_requested_and_achieved():
    tab = privacy_table(FACES, ["glasses"], "smile", k=3, l=1.5, t=0.2)
    assert tab.k_anonymity == {"requested": 3, "achieved": 3, "met": True}
    assert tab.l_diversity["met"] and tab.t_closeness["met"] and tab.met and tab.classes == 2
    assert not privacy_table(FACES, ["glasses", "nose"], "smile", k=2).met
    with pytest.raises(AnonymityError, match="unknown attribute"):
        k_anonymity(FACES, ["beard"])
    with pytest.raises(AnonymityError, match="empty"):
        k_anonymity([], ["glasses"])
    with pytest.raises(AnonymityError, match="sensitive"):
        privacy_table(FACES, ["glasses"], l=2)


def test_randomize_touches_the_requested_share():
    x = np.zeros((4, 10))
    y = randomize(x, 0.3, 1.0, np.random.default_rng(0))
    assert x.sum() == 0 and all((row != 0).sum() == 3 for row in y)  # 30 % of each row, input untouched
    assert np.array_equal(y, randomize(x, 0.3, 1.0, np.random.default_rng(0)))


def test_ppas_moves_a_class_toward_the_reference_then_perturbs():
    from headveil.geometry.identity.anonymity import ppas, randomized_response

    faces = [{"q": 0, "smile": v} for v in (True, True, True, False)]
    # P(smile) = ¾ in the class against ½ in the world: d = ¼ > t = 0.2, so the first face takes
    # ¬smile; then the class sits at ½ (d = 0) and the others keep theirs
    out = ppas(faces, ["q"], ["smile"], t=0.2, epsilon=math.inf, rng=np.random.default_rng(0),
               reference={"smile": 0.5})
    assert [r["smile"] for r in out] == [False, True, True, False] and faces[0]["smile"] is True
    assert t_closeness(out, ["q"], "smile") == 0.0
    # a face holding the under-represented value keeps it; the next over-represented one flips
    order = [{"q": 0, "smile": v} for v in (False, True, True, True)]
    out = ppas(order, ["q"], ["smile"], t=0.2, epsilon=math.inf, rng=np.random.default_rng(0), reference={"smile": 0.5})
    assert [r["smile"] for r in out] == [False, False, True, True]
    # already close enough: nothing changes
    same = ppas(faces, ["q"], ["smile"], t=0.3, epsilon=math.inf, rng=np.random.default_rng(0),
                reference={"smile": 0.5})
    assert [r["smile"] for r in same] == [True, True, True, False]
    # ε = 0 flips a fair coin: about half of 4000 releases change
    rng = np.random.default_rng(1)
    flips = sum(randomized_response(True, 0.0, rng) is False for _ in range(4000))
    assert abs(flips / 4000 - 0.5) < 0.03  # binomial std 0.008
    with pytest.raises(AnonymityError, match="binary"):
        ppas(FACES, ["glasses"], ["age"], 0.1, 1.0, np.random.default_rng(0))


def test_perturb_releases_each_value_by_randomized_response():
    from headveil.geometry.identity.anonymity import perturb

    recs = [{"q": i % 2 == 0, "s": True} for i in range(4000)]
    same = perturb(recs, ["s"], math.inf, np.random.default_rng(0))
    assert same == recs and same is not recs
    out = perturb(recs, ["s"], math.log(3.0), np.random.default_rng(2))  # kept with 3/4
    assert abs(sum(not r["s"] for r in out) / 4000 - 0.25) < 0.03  # binomial std 0.007
    assert all(r["q"] == o["q"] for r, o in zip(recs, out))  # other attributes untouched
    assert all(r["s"] for r in recs)  # the inputs are not modified


# -- assign_attributes ------------------------------------------------------------------------
from headveil.geometry.identity.anonymity import assign_attributes  # noqa: E402


def _faces(rows):
    return [dict(zip(("male", "older", "smiling"), r)) for r in rows]


def test_assign_merges_small_class_into_nearest():
    # classes: (T,T)×3, (T,F)×1, (F,F)×3 → the lone (T,F) joins a Hamming-1 neighbour (ties: larger, then name)
    recs = _faces([(True, True, False)] * 3 + [(True, False, True)] + [(False, False, True)] * 3)
    a = assign_attributes(recs, ["male", "older"], k=3)
    assert a.merges == 1
    assert k_anonymity(a.records, ["male", "older"]) >= 3
    assert sum(len(c) > 0 for c in a.changed) == 1  # only the lone face changed
    assert a.changed[3] in (["male"], ["older"])


def test_assign_meets_l_and_t_and_changes_little():
    recs = _faces([(True, True, True)] * 4 + [(True, True, False)] * 0 + [(False, False, False)] * 4)
    a = assign_attributes(recs, ["male", "older"], "smiling", k=4, l=2, t=0.2)
    tab = privacy_table(a.records, ["male", "older"], "smiling", k=4, l=2, t=0.2, l_kind="distinct")
    assert tab.met
    # each class of 4 gets 2 smiling + 2 not (the whole set is 50/50): 2 changes per class
    assert sum(len(c) for c in a.changed) == 4


def test_assign_entropy_l_two_needs_even_halves():
    recs = _faces([(True, True, True)] * 3 + [(False, False, False)] * 2)
    with pytest.raises(AnonymityError, match="l-diversity"):
        assign_attributes(recs, ["male"], "smiling", k=2, l=2, l_kind="entropy")


def test_assign_errors_name_the_constraint():
    recs = _faces([(True, True, True), (False, True, False), (True, False, True)])
    with pytest.raises(AnonymityError, match="k=5 is larger"):
        assign_attributes(recs, ["male"], k=5)
    with pytest.raises(AnonymityError, match="one face"):
        assign_attributes(recs[:1], ["male"], k=1)
    with pytest.raises(AnonymityError, match="takes only 2"):
        assign_attributes(recs, ["male"], "smiling", k=1, l=3)
    with pytest.raises(AnonymityError, match="unknown attribute"):
        assign_attributes(recs, ["bald"], k=1)
    with pytest.raises(AnonymityError, match="both a quasi"):
        assign_attributes(recs, ["male", "smiling"], "smiling", k=1)
