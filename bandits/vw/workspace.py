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

# Parsed action lines a serving model, the learner or an evaluation keeps: a catalog's titles and
# artworks, parsed once instead of for every viewer or every learned row; at a few kB each, a few tens
# of MB at most.
CACHED_ACTION_LINES = 8192


class VWError(Exception):
    """Vowpal Wabbit refused an example."""


class TextExamples:
    """Predict and learn on multi-line text examples of one workspace."""

    def __init__(self, workspace: vw.Workspace, *, cached_actions: int = 0) -> None:
        """``cached_actions``: how many parsed, unlabelled action lines are kept for reuse (0: none).

        A serving model scores the same catalog lines for every viewer, and the learner learns rows
        whose action lines are the catalog's, all but the chosen one unlabelled. VW leaves a parsed
        unlabelled action example as it found it after a prediction or an update (the shared
        features it joins to the actions are taken off again), so parsing each such line once is
        enough: tests/bandits/vw/test_vwtext.py checks, under every option a policy may set, that
        the predictions and the learned models are identical. A labelled line is parsed each time:
        reused, it changes what ``--lrqdropout`` learns. The cache is emptied when it is full, which
        bounds its memory for catalogs or inline actions that never repeat.
        """
        if not workspace.multiline:
            raise ValueError("TextExamples is for multi-line (ADF) workspaces")
        self.workspace = workspace
        self._core = workspace._workspace
        self._cached_actions = cached_actions
        self._actions: dict[str, _core.Example] = {}

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
        try:
            self._core.learn_multi_ex_one(self._examples(lines))
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
