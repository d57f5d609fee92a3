"""Multi-line VW text examples in and out of a workspace, without the per-example wrapper cost.

``Workspace.predict_one``/``learn_one`` of vowpal-wabbit-next re-check every example's label type
in Python (two calls into the extension per example) and wrap each parsed example in a Python
object. On a 41-line title decision that costs more than parsing and predicting together: measured
here, 96 us through the public API against 38 us through the extension's own functions, for both
predict and learn. Lines parsed by the workspace's own text parser always carry its label type, so
the check can never fail here. This module is the one place that reaches past the public API; it is
pinned by requirements.txt (vowpal-wabbit-next 0.7.0) and tests/bandits/vw/test_vwtext.py proves that it
predicts and learns exactly as the public API does.
"""

from __future__ import annotations

from collections.abc import Sequence

import vowpal_wabbit_next as vw
from vowpal_wabbit_next import _core

from bandits.vw import features

# Parsed action lines a serving model, the learner or an evaluation keeps: a catalog's titles and
# artworks, parsed once instead of for every viewer or every learned row; at a few kB each, a few tens
# of MB at most.
CACHED_ACTION_LINES = 8192


class VWError(Exception):
    """Vowpal Wabbit refused an example."""


class TextExamples:
    """Predict and learn on multi-line text examples of one workspace."""

    def __init__(self, workspace: vw.Workspace, *, cached_actions: int = 0, chosen_alone: bool = False) -> None:
        """``cached_actions``: how many parsed, unlabelled action lines are kept for reuse (0: none).

        A serving model scores the same catalog lines for every viewer, and the learner learns rows
        whose action lines are the catalog's, all but the chosen one unlabelled. VW leaves a parsed
        unlabelled action example as it found it after a prediction or an update (the shared
        features it joins to the actions are taken off again), so parsing each such line once is
        enough: tests/bandits/vw/test_vwtext.py checks, under every option a policy may set, that
        the predictions and the learned models are identical. A labelled line is parsed each time:
        reused, it changes what ``--lrqdropout`` learns. The cache is emptied when it is full, which
        bounds its memory for catalogs or inline actions that never repeat.

        ``chosen_alone``: learn a labelled example from its shared line and its labelled action
        alone, each other action stood in for by a line without features (``learn_chosen``). Only
        for a workspace that learns through the chosen action alone (``bandits.vw.options.learns_chosen_alone``).
        """
        if not workspace.multiline:
            raise ValueError("TextExamples is for multi-line (ADF) workspaces")
        self.workspace = workspace
        self.chosen_alone = chosen_alone
        self._core = workspace._workspace
        self._cached_actions = cached_actions
        self._actions: dict[str, _core.Example] = {}
        self._blanks: list[_core.Example] = []

    def _parse(self, lines: Sequence[str]) -> list[_core.Example]:
        core = self._core
        return [_core._parse_line_text(core, line) for line in lines]

    def _parse_reusing_actions(self, lines: Sequence[str]) -> list[_core.Example]:
        core, cache = self._core, self._actions
        parsed = [_core._parse_line_text(core, lines[0])]  # the shared line: the viewer's, new each time
        for line in lines[1:]:
            example = cache.get(line)
            if example is None:
                example = _core._parse_line_text(core, line)
                if not line.startswith("|"):  # a label (or a tag) before the features: not reused
                    parsed.append(example)
                    continue
                if len(cache) >= self._cached_actions:
                    cache.clear()
                cache[line] = example
            parsed.append(example)
        if len(set(map(id, parsed))) < len(parsed):  # a line given twice: one example object each time
            return self._parse(lines)
        return parsed

    def _examples(self, lines: Sequence[str]) -> list[_core.Example]:
        return self._parse_reusing_actions(lines) if self._cached_actions and lines else self._parse(lines)

    def predict(self, lines: Sequence[str]) -> list[tuple[int, float]]:
        """Return VW's prediction for one multi-line example (for ``--cb_adf``: (action, cost) pairs).

        Raises:
            VWError: VW refused the example.
        """
        try:
            return self._core.predict_multi_ex_one(self._examples(lines))  # type: ignore[return-value]
        except RuntimeError as exc:
            raise VWError(str(exc)) from None

    def learn(self, lines: Sequence[str]) -> None:
        """Learn one labelled multi-line example.

        Raises:
            VWError: VW refused the example.
        """
        if self.chosen_alone:
            found = features.shared_and_labelled(lines)
            if found is not None:
                self.learn_chosen(*found, actions=len(lines) - 1)
                return
        try:
            self._core.learn_multi_ex_one(self._examples(lines))
        except RuntimeError as exc:
            raise VWError(str(exc)) from None

    def learn_chosen(self, shared: str, labelled: str, *, actions: int) -> None:
        """Learn the example of shared line ``shared`` whose ``actions`` action lines hold the labelled ``labelled``.

        Under ``--cb_type mtr`` VW learns a labelled example through its chosen action alone: it
        regresses on that action's features (with the shared ones) and weights it by its inverse
        probability times the examples it has learned over the actions it has counted in them. The
        other actions are counted, never read. So they are stood in for here by lines without
        features, parsed once and reused: VW counts the same, and learns the same weights, as from
        the whole example, while no other action's line is built, looked up or parsed, and VW (which
        scores every action of a labelled example before it learns) crosses no other action's
        features with the viewer's. tests/bandits/vw/test_vwtext.py learns one stream both ways under
        every ``mtr`` option a policy may set and finds every weight and every prediction identical.

        Raises:
            VWError: VW refused the example.
        """
        if not self.chosen_alone:
            raise ValueError("learn_chosen needs a TextExamples made with chosen_alone=True")
        core, blanks = self._core, self._blanks
        while len(blanks) < actions - 1:
            blanks.append(_core._parse_line_text(core, "|"))
        examples = [
            _core._parse_line_text(core, shared),
            _core._parse_line_text(core, labelled),
            *blanks[: actions - 1],
        ]
        try:
            core.learn_multi_ex_one(examples)
        except RuntimeError as exc:
            raise VWError(str(exc)) from None


class TextLines:
    """Predict and learn on single-line text examples of one workspace (e.g. a squared-loss regressor)."""

    def __init__(self, workspace: vw.Workspace) -> None:
        if workspace.multiline:
            raise ValueError("TextLines is for single-line workspaces")
        self.workspace = workspace
        self._core = workspace._workspace

    def predict(self, line: str) -> float:
        """Return VW's prediction for one example.

        Raises:
            VWError: VW refused the example.
        """
        try:
            return float(self._core.predict_one(_core._parse_line_text(self._core, line)))  # type: ignore[arg-type]
        except RuntimeError as exc:
            raise VWError(str(exc)) from None

    def learn(self, line: str) -> None:
        """Learn one labelled example.

        Raises:
            VWError: VW refused the example.
        """
        try:
            self._core.learn_one(_core._parse_line_text(self._core, line))
        except RuntimeError as exc:
            raise VWError(str(exc)) from None
