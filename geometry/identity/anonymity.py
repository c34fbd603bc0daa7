"""Measurable privacy of a face set over its attributes (AnonymousNet §3.2; the book's privacy metrics).

A face set is a sequence of records, each a mapping ``attribute name → value`` (booleans,
categories or numbers). *Quasi-identifiers* are the attributes an adversary can observe and
combine; records sharing all their values form an *equivalence class*. A *sensitive* attribute is
the one whose value must not be inferable from the class.

- :func:`k_anonymity`: the size of the smallest equivalence class (every record hides among ≥ k).
- :func:`l_diversity`: the fewest "well-represented" sensitive values in a class — ``distinct``
  values, or ``entropy`` l-diversity (eq. 3–4): a class satisfies l when Entropy(E) ≥ log l, so
  its effective l is exp(Entropy(E)).
- :func:`t_closeness`: the largest Earth Mover's Distance between the sensitive attribute's
  distribution in a class and in the whole set (eq. 5); equal ground distance for categories
  (half the L1 distance), ordered distance for numbers and ranks (Li et al.: the mean absolute
  cumulative difference over the m ordered values, divided by m − 1).
- :func:`randomize`: the paper's randomness — Gaussian noise N(0, σ) on a random share γ of features.
- :func:`privacy_table`: all of them at once, requested beside achieved.
- :func:`ppas`: Privacy-Preserving Attribute Selection (Algorithm 1, binary attributes) with its
  ε perturbation (:func:`randomized_response`).
- :func:`assign_attributes`: new attribute sets meeting a requested k / l / t (class merging,
  then re-dealing the sensitive values), or an error naming the constraint that cannot be met.

All functions are pure and deterministic (``randomize`` takes its generator).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from headveil.common.errors import HeadVeilError


class AnonymityError(HeadVeilError, ValueError):
    """A privacy table cannot be computed (empty set, unknown attribute)."""


def _check(records: Sequence[Mapping[str, Any]], names: Sequence[str]) -> None:
    if len(records) == 0:
        raise AnonymityError("the face set is empty")
    if not names:
        raise AnonymityError("give at least one quasi-identifier")
    known = set(records[0])
    for r in records:
        known &= set(r)
    missing = [n for n in names if n not in known]
    if missing:
        raise AnonymityError(f"unknown attribute(s) {missing}; every record has {sorted(known)}")


def equivalence_classes(records: Sequence[Mapping[str, Any]], quasi: Sequence[str]) -> dict[tuple, list[int]]:
    """``{quasi-identifier values: record indices}``, in order of first appearance."""
    _check(records, quasi)
    classes: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        classes[tuple(r[q] for q in quasi)].append(i)
    return dict(classes)


def k_anonymity(records: Sequence[Mapping[str, Any]], quasi: Sequence[str]) -> int:
    """The size of the smallest equivalence class on ``quasi``."""
    return min(len(ix) for ix in equivalence_classes(records, quasi).values())


def entropy(values: Sequence[Any]) -> float:
    """Shannon entropy (natural log) of the empirical distribution of ``values`` (eq. 4)."""
    n = len(values)
    return float(-sum(c / n * math.log(c / n) for c in Counter(values).values()))


def l_diversity(records: Sequence[Mapping[str, Any]], quasi: Sequence[str], sensitive: str,
                kind: str = "entropy") -> float:
    """The l a face set achieves for ``sensitive``: the minimum over classes of the number of
    distinct sensitive values (``kind="distinct"``) or of exp(Entropy(E)) (``"entropy"``, eq. 3)."""
    _check(records, [*quasi, sensitive])
    if kind not in ("distinct", "entropy"):
        raise AnonymityError(f"kind must be distinct or entropy; got {kind!r}")
    out = math.inf
    for ix in equivalence_classes(records, quasi).values():
        vals = [records[i][sensitive] for i in ix]
        out = min(out, len(set(vals)) if kind == "distinct" else math.exp(entropy(vals)))
    return float(out)


def _is_ordered(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values)


def earth_movers_distance(p: Mapping[Any, float], q: Mapping[Any, float], ordered: bool | None = None) -> float:
    """EMD between two distributions over the same value set (mappings value → probability).

    ``ordered`` (numbers, ranks): ``(1 / (m − 1)) Σ_i |Σ_{j ≤ i} (p_j − q_j)|`` over the m sorted
    values; otherwise (categories, booleans) equal ground distance: ``½ Σ |p − q|``. ``None`` picks
    ordered when every value is a number."""
    support = sorted(set(p) | set(q), key=lambda v: (str(type(v)), v))
    if ordered is None:
        ordered = _is_ordered(support)
    d = np.array([p.get(v, 0.0) - q.get(v, 0.0) for v in support], np.float64)
    if ordered:
        return float(np.abs(np.cumsum(d)).sum() / max(len(support) - 1, 1))
    return float(0.5 * np.abs(d).sum())


def _distribution(values: Sequence[Any]) -> dict[Any, float]:
    n = len(values)
    return {v: c / n for v, c in Counter(values).items()}


def t_closeness(records: Sequence[Mapping[str, Any]], quasi: Sequence[str], sensitive: str,
                ordered: bool | None = None) -> float:
    """The largest EMD between ``sensitive``'s distribution in a class and in the whole set (eq. 5)."""
    _check(records, [*quasi, sensitive])
    whole = _distribution([r[sensitive] for r in records])
    return max(earth_movers_distance(_distribution([records[i][sensitive] for i in ix]), whole, ordered)
               for ix in equivalence_classes(records, quasi).values())


def randomize(features: np.ndarray, gamma: float, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add ``N(0, σ)`` to a random share ``gamma`` of the features of each row of ``features (N, D)``
    (AnonymousNet §3.2, randomness); returns a new float64 array."""
    x = np.array(features, np.float64, copy=True)
    if x.ndim != 2:
        raise AnonymityError(f"features must be (N, D); got {x.shape}")
    if not 0 <= gamma <= 1 or sigma < 0:
        raise AnonymityError(f"gamma must be in [0, 1] and sigma ≥ 0; got {gamma}, {sigma}")
    n_pick = int(round(gamma * x.shape[1]))
    for row in x:
        idx = rng.choice(x.shape[1], size=n_pick, replace=False)
        row[idx] += rng.normal(0.0, sigma, n_pick)
    return x


@dataclass
class PrivacyTable:
    """Requested and achieved k / l / t of a face set (``None`` where not requested)."""

    quasi_identifiers: list
    sensitive: str | None
    k_anonymity: dict
    l_diversity: dict
    t_closeness: dict
    classes: int

    @property
    def met(self) -> bool:
        """Every requested constraint holds."""
        return all(d.get("met", True) for d in (self.k_anonymity, self.l_diversity, self.t_closeness))


def privacy_table(records: Sequence[Mapping[str, Any]], quasi: Sequence[str], sensitive: str | None = None,
                  k: int | None = None, l: float | None = None, t: float | None = None,
                  l_kind: str = "entropy") -> PrivacyTable:
    """k-anonymity, l-diversity and t-closeness of a face set, each beside its request (``met``)."""
    k_ach = k_anonymity(records, quasi)
    kd = {"requested": k, "achieved": k_ach, **({"met": k_ach >= k} if k is not None else {})}
    ld: dict = {"kind": l_kind}
    td: dict = {}
    if sensitive is not None:
        l_ach = l_diversity(records, quasi, sensitive, l_kind)
        t_ach = t_closeness(records, quasi, sensitive)
        ld.update(requested=l, achieved=l_ach, **({"met": l_ach >= l - 1e-12} if l is not None else {}))
        td.update(requested=t, achieved=t_ach, **({"met": t_ach <= t + 1e-12} if t is not None else {}))
    elif l is not None or t is not None:
        raise AnonymityError("l-diversity and t-closeness need a sensitive attribute")
    return PrivacyTable(list(quasi), sensitive, kd, ld, td, len(equivalence_classes(records, quasi)))


def randomized_response(value: bool, epsilon: float, rng: np.random.Generator) -> bool:
    """ε-differentially private release of one boolean: kept with probability e^ε / (1 + e^ε),
    flipped otherwise (ε = inf keeps it)."""
    if not epsilon >= 0:
        raise AnonymityError(f"epsilon must be ≥ 0; got {epsilon}")
    p_flip = 0.0 if math.isinf(epsilon) else 1.0 / (1.0 + math.exp(epsilon))
    return (not value) if rng.uniform() < p_flip else bool(value)


def ppas(records: Sequence[Mapping[str, Any]], quasi: Sequence[str], attributes: Sequence[str], t: float,
         epsilon: float, rng: np.random.Generator, reference: Mapping[str, float] | None = None) -> list[dict]:
    """Privacy-Preserving Attribute Selection (AnonymousNet Algorithm 1, binary attributes).

    For every face (in order) and every attribute E_i of ``attributes``: S is the reference
    distribution of E_i (``reference[name]`` = P(True), default the whole set's), S_{E_i} its
    distribution in the face's equivalence class with the face's current value. If
    d(S, S_{E_i}) ≤ ``t`` the face keeps E_i, else — when its value is the over-represented one —
    it takes ¬E_i (which moves its class toward S; flipping the other value would move it away);
    the class's distribution is updated before the next face. Then Perturbation(A', ε): each
    selected value is released by :func:`randomized_response` (ε-differential privacy per
    attribute). Returns new records (the inputs are not modified)."""
    _check(records, [*quasi, *attributes])
    if not t >= 0:
        raise AnonymityError(f"t must be ≥ 0; got {t}")
    out = [dict(r) for r in records]
    for a in attributes:
        if not all(isinstance(r[a], (bool, np.bool_)) for r in records):
            raise AnonymityError(f"PPAS selects binary attributes; {a!r} is not boolean in every record")
    ref = {a: (reference[a] if reference is not None and a in reference else
               float(np.mean([bool(r[a]) for r in records]))) for a in attributes}
    classes = equivalence_classes(records, quasi)
    for ix in classes.values():
        for i in ix:
            for a in attributes:
                p_class = float(np.mean([bool(out[j][a]) for j in ix]))
                over = bool(out[i][a]) == (p_class > ref[a])  # this face holds the over-represented value
                if abs(p_class - ref[a]) > t and over:  # EMD of two boolean distributions = |p − q|
                    out[i][a] = not bool(out[i][a])
    return perturb(out, attributes, epsilon, rng)


def perturb(records: Sequence[Mapping[str, Any]], attributes: Sequence[str], epsilon: float,
            rng: np.random.Generator) -> list[dict]:
    """Perturbation(A', ε) of Algorithm 1: every boolean ``attributes`` value of every record
    released by :func:`randomized_response` (ε-differential privacy per attribute and face; ε = inf
    changes nothing). Returns new records (the inputs are not modified)."""
    out = [dict(r) for r in records]
    for r in out:
        for a in attributes:
            r[a] = randomized_response(bool(r[a]), epsilon, rng)
    return out


@dataclass
class Assignment:
    """New attribute sets meeting k / l / t (:func:`assign_attributes`).

    Attributes:
        records: the new records (same keys as the inputs).
        changed: per record, the names whose value changed.
        merges: how many classes were merged into others.
    """

    records: list[dict]
    changed: list[list[str]]
    merges: int


def _hamming(a: tuple, b: tuple) -> int:
    return sum(x != y for x, y in zip(a, b))


def _l_of(counts: Sequence[int], kind: str) -> float:
    c = np.asarray([x for x in counts if x > 0], np.float64)
    if kind == "distinct":
        return float(len(c))
    p = c / c.sum()
    return float(math.exp(-(p * np.log(p)).sum()))


def _class_counts(n: int, support: list, target: Mapping[Any, float], l: float | None, kind: str) -> dict | None:
    """Counts of each sensitive value in a class of ``n`` closest to ``n × target`` (largest
    remainder) and meeting ``l``; ``None`` when no split of ``n`` meets ``l``."""
    raw = np.array([n * target.get(v, 0.0) for v in support])
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    if l is None:
        return dict(zip(support, counts.tolist()))
    for _ in range(n * len(support) + 1):
        if _l_of(counts, kind) >= l - 1e-9:
            return dict(zip(support, counts.tolist()))
        hi, lo = int(np.argmax(counts)), int(np.argmin(counts))
        if counts[hi] - counts[lo] <= 1:
            return None
        counts[hi] -= 1
        counts[lo] += 1
    return None


def assign_attributes(records: Sequence[Mapping[str, Any]], quasi: Sequence[str], sensitive: str | None = None,
                      k: int = 5, l: float | None = None, t: float | None = None,
                      l_kind: str = "distinct") -> Assignment:
    """New attribute values for a face set so that it meets k-anonymity on ``quasi`` and, for
    ``sensitive``, l-diversity and t-closeness, changing as few values as this greedy finds.

    1. **k**: while a class has fewer than ``k`` faces, the smallest class joins the class nearest
       to it in Hamming distance over ``quasi`` (ties: the larger class) — its faces take that
       class's quasi-identifier values.
    2. **l and t**: in each class the sensitive values are re-dealt so that their counts are the
       class size times the whole set's distribution (largest remainder), moved toward uniform
       until the class has l well-represented values (``distinct`` or ``entropy``, eq. 3); the
       faces keeping their own value are the first ones in order. A class that cannot reach
       ``l`` at its size, or whose distribution stays farther than ``t`` from the new whole set's
       (eq. 5), joins its nearest class and the step repeats.

    Raises:
        AnonymityError: a set of one face, ``k`` larger than the set, an ``l`` the sensitive
            attribute cannot have (more values than it takes), bad ``t``, or no assignment found —
            the message names the failing constraint.
    """
    _check(records, [*quasi, *([sensitive] if sensitive else [])])
    n = len(records)
    if n < 2:
        raise AnonymityError("a set of one face cannot be anonymised: k-anonymity needs at least two faces")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise AnonymityError(f"k must be a positive integer; got {k!r}")
    if k > n:
        raise AnonymityError(f"k-anonymity: k={k} is larger than the set ({n} faces)")
    if l_kind not in ("distinct", "entropy"):
        raise AnonymityError(f"l_kind must be distinct or entropy; got {l_kind!r}")
    if sensitive is None and (l is not None or t is not None):
        raise AnonymityError("l-diversity and t-closeness need a sensitive attribute")
    if sensitive in quasi:
        raise AnonymityError(f"{sensitive!r} cannot be both a quasi-identifier and the sensitive attribute")
    out = [dict(r) for r in records]
    support: list = []
    target: dict = {}
    if sensitive is not None:
        support = sorted({r[sensitive] for r in records}, key=lambda v: (str(type(v)), v))
        if isinstance(records[0][sensitive], (bool, np.bool_)):
            support = [False, True]
        if l is not None and l > len(support) + 1e-9:
            raise AnonymityError(f"l-diversity: l={l} is impossible: the sensitive attribute {sensitive!r} takes only "
                                 f"{len(support)} value(s)")
        if t is not None and not 0 <= t <= 1:
            raise AnonymityError(f"t-closeness: t must be in [0, 1]; got {t}")
        target = _distribution([r[sensitive] for r in records])
    classes: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(out):
        classes[tuple(r[q] for q in quasi)].append(i)
    merges = 0

    def merge(key: tuple) -> None:
        nonlocal merges
        others = [c for c in classes if c != key]
        dest = min(others, key=lambda c: (_hamming(c, key), -len(classes[c]), str(c)))
        classes[dest].extend(classes.pop(key))
        merges += 1

    while len(classes) > 1:
        small = min(classes, key=lambda c: (len(classes[c]), str(c)))
        if len(classes[small]) >= k:
            break
        merge(small)
    for key, ix in classes.items():
        for i in ix:
            for q, v in zip(quasi, key):
                out[i][q] = v
    if sensitive is not None:
        for _ in range(n + 1):
            failing = None
            for key, ix in classes.items():
                counts = _class_counts(len(ix), support, target, l, l_kind)
                if counts is None:
                    failing = (key, "l")
                    break
                need = dict(counts)
                keep = []
                for i in sorted(ix):
                    v = records[i][sensitive]
                    if need.get(v, 0) > 0:
                        need[v] -= 1
                        keep.append(i)
                rest = [i for i in sorted(ix) if i not in keep]
                fill = [v for v in support for _ in range(need[v])]
                for i in keep:
                    out[i][sensitive] = records[i][sensitive]
                for i, v in zip(rest, fill):
                    out[i][sensitive] = v
            if failing is None and t is not None:
                whole = _distribution([r[sensitive] for r in out])
                for key, ix in classes.items():
                    if earth_movers_distance(_distribution([out[i][sensitive] for i in ix]), whole) > t + 1e-12:
                        failing = (key, "t")
                        break
            if failing is None:
                break
            if len(classes) == 1:
                what = (f"l-diversity: no split of the {n} faces gives l={l} ({l_kind}) for {sensitive!r}"
                        if failing[1] == "l" else f"t-closeness: t={t} cannot be met for {sensitive!r}")
                raise AnonymityError(f"no assignment meets k={k}, l={l}, t={t}: {what}")
            merge(failing[0])
            for key, ix in classes.items():
                for i in ix:
                    for q, v in zip(quasi, key):
                        out[i][q] = v
    changed = [[a for a in r if r[a] != o[a]] for r, o in zip(records, out)]
    return Assignment(out, changed, merges)
