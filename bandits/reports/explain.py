"""Why a pick: each feature's share of the model's estimated reward for it.

A policy's estimate for one action is linear in its features plus pairwise interactions between
namespaces (``-q UT``...): ``f(x) = b + sum_i w_i x_i + sum_{i<j} w_ij x_i x_j``. The Shapley value
of feature ``i`` in such a model is its own term plus half of every interaction it is in, and that is
exactly the mean of two predictions' differences:

    phi_i = ( [f(all) - f(all without i)] + [f(only i) - f(none)] ) / 2

so each feature's contribution takes two predictions, the contributions add up to the estimate minus
the baseline ``f(none)`` (the constant), and nothing about VW's hashing has to be reimplemented. With
a cubic interaction or low-rank options the same formula is a close approximation, no longer exact.

The predictions run on an explainer: a workspace of its own, loaded from the serving model's
bytes, so explaining never holds the lock the serving path predicts under, and a rank without
``explain`` pays nothing.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bandits.model.policy import ServingModel, new_workspace
from bandits.vw import features
from bandits.vw.workspace import TextExamples

NAMESPACES = {
    "U": "viewer",
    "I": "viewer id",
    "K": "taste class",
    "P": "position",
    "T": "title",
    "G": "genre",
    "A": "artwork",
}
TOP = 5


@dataclass(frozen=True)
class Line:
    """A VW text line split into its tokens, each with its namespace."""

    shared: bool
    tokens: tuple[tuple[str, str], ...]
    namespaces: tuple[str, ...]  # every namespace of the line, in order, including empty ones

    @classmethod
    def parse(cls, text: str) -> Line:
        found = features.sections(text)
        tokens = tuple((name, token) for name, names_tokens in found for token in names_tokens)
        return cls(
            shared=text.split("|", 1)[0].strip() == "shared", tokens=tokens, namespaces=tuple(n for n, _ in found)
        )

    def render(self, keep: Sequence[int]) -> str:
        """Return the line with only the tokens at positions ``keep`` (namespaces stay, maybe empty)."""
        kept: dict[str, list[str]] = {name: [] for name in self.namespaces}
        for index in keep:
            name, token = self.tokens[index]
            kept[name].append(token)
        body = " ".join(features.namespace(name, tokens) for name, tokens in kept.items())
        return f"shared {body}" if self.shared else body


def describe(namespace: str, token: str) -> dict[str, Any]:
    """Return a token as the feature a person reads: namespace, name and value."""
    name, value = features.token_value(token)
    return {
        "namespace": NAMESPACES.get(namespace, namespace),
        "feature": name,
        "value": 1.0 if value is None else value,
    }


class Explainer:
    """Predictions for explanations on a private copy of one model version."""

    def __init__(self, blob: bytes) -> None:
        self._examples = TextExamples(new_workspace([], model_data=blob))
        self._lock = threading.Lock()

    def _reward(self, shared: str, action: str) -> float:
        with self._lock:
            scores = self._examples.predict([shared, action])
        return features.reward_of(float(scores[0][1]))

    def explain(self, shared: str, action: str, *, top: int = TOP) -> dict[str, Any]:
        """Return the estimated reward of ``action`` under ``shared``, its baseline, and the top contributions."""
        left, right = Line.parse(shared), Line.parse(action)
        n_left, n_right = len(left.tokens), len(right.tokens)
        every_left, every_right = list(range(n_left)), list(range(n_right))
        full = self._reward(shared, action)
        empty = self._reward(left.render([]), right.render([]))
        found = []
        for index in range(n_left + n_right):
            if index < n_left:
                without = self._reward(left.render([i for i in every_left if i != index]), action)
                alone = self._reward(left.render([index]), right.render([]))
                namespace, token = left.tokens[index]
            else:
                j = index - n_left
                without = self._reward(shared, right.render([i for i in every_right if i != j]))
                alone = self._reward(left.render([]), right.render([j]))
                namespace, token = right.tokens[j]
            found.append({**describe(namespace, token), "contribution": ((full - without) + (alone - empty)) / 2})
        found.sort(key=lambda item: -abs(item["contribution"]))
        return {
            "estimated_reward": full,
            "baseline": empty,
            "features": found[:top],
            "other_features": float(sum(item["contribution"] for item in found[top:])),
            "feature_count": len(found),
        }


_explainers: weakref.WeakKeyDictionary[ServingModel, Explainer] = weakref.WeakKeyDictionary()
_explainers_lock = threading.Lock()


def explainer_for(model: ServingModel) -> Explainer:
    """Return the ``Explainer`` of a loaded model version: a private copy made on first use, kept while it is."""
    found = _explainers.get(model)
    if found is None:
        with _explainers_lock:
            found = _explainers.get(model)
            if found is None:
                found = _explainers[model] = Explainer(model.blob)
    return found


def feature_group(namespace: str, feature: str) -> str:
    """The feature a person asks about: ``segment`` for ``segment=night-owl``, ``hour`` for ``hour``; a genre."""
    if namespace == "G":
        return feature
    name, sep, _ = feature.partition("=")
    return name if sep else feature


def importance(explainer: Explainer, examples: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """Mean absolute contribution of each feature to the estimates of ``examples`` (shared line, chosen action).

    A feature's importance is how far, on average over the decisions, it moved the estimate for the
    action that was shown, in either direction (zero in decisions where it is absent); the signed mean
    says which way it pushed. Features are grouped by name: every value of ``segment`` counts as
    ``segment``.
    """
    absolute: dict[tuple[str, str], float] = {}
    signed: dict[tuple[str, str], float] = {}
    present: dict[tuple[str, str], int] = {}
    for shared, action in examples:
        explained = explainer.explain(shared, action, top=10_000)
        seen = set()
        for item in explained["features"]:
            key = (item["namespace"], feature_group(_letter(item["namespace"]), item["feature"]))
            absolute[key] = absolute.get(key, 0.0) + abs(item["contribution"])
            signed[key] = signed.get(key, 0.0) + item["contribution"]
            seen.add(key)
        for key in seen:
            present[key] = present.get(key, 0) + 1
    n = max(1, len(examples))
    ranked = sorted(absolute, key=lambda key: -absolute[key])
    return [
        {
            "namespace": key[0],
            "feature": key[1],
            "mean_abs_contribution": absolute[key] / n,
            "mean_contribution": signed[key] / n,
            "present_share": present[key] / n,
        }
        for key in ranked
    ]


def _letter(namespace_name: str) -> str:
    return next((letter for letter, name in NAMESPACES.items() if name == namespace_name), namespace_name)
