"""The fast text path predicts and learns exactly as vowpal-wabbit-next's public API."""

from __future__ import annotations

import random

import pytest
import vowpal_wabbit_next as vw

from bandits.vw.options import learns_chosen_alone, model_options
from bandits.vw.workspace import TextExamples, TextLines, VWError
from tests.helpers import learned_state


def stream(seed: int, n: int = 400):
    rng = random.Random(seed)
    for _ in range(n):
        shared = f"shared |U seg={rng.randrange(4)} hour:{rng.randrange(24)} |P pos={rng.randrange(5)}"
        actions = [f"|T id=t{i} d={i % 5} |G g{i % 3}" for i in rng.sample(range(30), rng.randrange(1, 12))]
        chosen = rng.randrange(len(actions))
        labelled = list(actions)
        labelled[chosen] = f"0:{-float(rng.random() < 0.4)}:{rng.choice([0.9, 0.05, 0.5])} {actions[chosen]}"
        yield [shared, *actions], [shared, *labelled]


@pytest.mark.parametrize("args", [["-q", "UT", "-l", "0.05"], ["-q", "UT", "--cb_type", "dr"], ["--lrq", "UT4"]])
def test_same_predictions_and_same_model_as_the_public_api(args):
    public = vw.Workspace(["--cb_adf", *args])
    parser = vw.TextFormatParser(public)
    fast_ws = vw.Workspace(["--cb_adf", *args])
    fast = TextExamples(fast_ws)
    for unlabelled, labelled in stream(3):
        expected = public.predict_one([parser.parse_line(line) for line in unlabelled])
        assert fast.predict(unlabelled) == expected
        public.learn_one([parser.parse_line(line) for line in labelled])
        fast.learn(labelled)
    assert fast_ws.serialize() == public.serialize()


def test_refuses_single_line_workspaces():
    with pytest.raises(ValueError):
        TextExamples(vw.Workspace([]))


def test_single_lines_predict_and_learn_as_the_public_api():
    rng = random.Random(5)
    public = vw.Workspace(["-q", "UT"])
    parser = vw.TextFormatParser(public)
    fast_ws = vw.Workspace(["-q", "UT"])
    fast = TextLines(fast_ws)
    for _ in range(300):
        line = f"|U seg={rng.randrange(4)} hour:{rng.randrange(24)} |T id=t{rng.randrange(30)}"
        assert fast.predict(line) == public.predict_one(parser.parse_line(line))
        labelled = f"{float(rng.random() < 0.4)} {line}"
        public.learn_one(parser.parse_line(labelled))
        fast.learn(labelled)
    assert fast_ws.serialize() == public.serialize()
    with pytest.raises(ValueError):
        TextLines(vw.Workspace(["--cb_adf"]))


# Every option a policy may set that acts at prediction time (bandits.vw.options), and the defaults.
REUSE_ARGS = [
    ["-q", "UT", "-q", "UG", "-q", "TG", "-l", "0.2", "--clip_p", "1"],
    ["--cubic", "UTG", "--cb_type", "dr"],
    ["--interactions", "UT", "--cb_type", "mtr", "--l2", "1e-6"],
    ["--lrq", "UT4"],
    ["--lrqfa", "UT4", "--lrqdropout"],
    ["--coin", "-q", "UT"],
    ["--noconstant", "-q", "UG", "-b", "12"],
    ["-q", "::", "--cb_type", "sm"],
]


@pytest.mark.parametrize("args", REUSE_ARGS, ids=[" ".join(args) for args in REUSE_ARGS])
def test_reused_action_examples_predict_exactly_as_freshly_parsed_ones(args):
    workspace = vw.Workspace(["--cb_adf", *args])
    fresh = TextExamples(workspace)
    reusing = TextExamples(workspace, cached_actions=16)  # 30 distinct action lines: the cache refills
    for unlabelled, labelled in stream(7, n=600):
        assert reusing.predict(unlabelled) == fresh.predict(unlabelled)
        fresh.learn(labelled)  # the weights move between predictions, as a served model's do on reload
        assert len(reusing._actions) <= 16
    shared, action = unlabelled[0], unlabelled[1]
    assert reusing.predict([shared, action, action]) == fresh.predict([shared, action, action])
    assert reusing.predict([shared, action]) == fresh.predict([shared, action])


# Options that act when a model learns: the prediction-time ones, and every --cb_type's update.
LEARN_REUSE_ARGS = [
    *REUSE_ARGS,
    ["-q", "UT", "--cb_type", "ips", "--clip_p", "0.1"],
    ["-q", "UT", "--cb_type", "dm"],
    ["-q", "UT", "--power_t", "0.3", "--l1", "1e-7"],
    ["-q", "UT", "--cb_type", "mtr", "--adaptive", "--invariant", "--normalized"],
]


@pytest.mark.parametrize("args", LEARN_REUSE_ARGS, ids=[" ".join(args) for args in LEARN_REUSE_ARGS])
def test_reused_action_examples_learn_exactly_as_freshly_parsed_ones(args):
    fresh_ws = vw.Workspace(["--cb_adf", *args])
    reusing_ws = vw.Workspace(["--cb_adf", *args])
    fresh = TextExamples(fresh_ws)
    reusing = TextExamples(reusing_ws, cached_actions=16)  # 30 distinct action lines: the cache refills
    for unlabelled, labelled in stream(11, n=600):
        fresh.learn(labelled)
        reusing.learn(labelled)
        assert reusing.predict(unlabelled) == fresh.predict(unlabelled)  # every update, not only the end
    assert reusing_ws.serialize() == fresh_ws.serialize()
    assert all(line.startswith("|") for line in reusing._actions)  # a labelled line is never kept
    # The same unlabelled line twice in one example, and the labelled one as well, learn as parsed.
    shared, action = labelled[0], unlabelled[1]
    twice = [shared, f"0:-1:0.5 {action}", action, action]
    fresh.learn(twice)
    reusing.learn(twice)
    assert reusing_ws.serialize() == fresh_ws.serialize()


MTR_ARGS = [args for args in LEARN_REUSE_ARGS if learns_chosen_alone(args)]


@pytest.mark.parametrize("args", MTR_ARGS, ids=[" ".join(args) for args in MTR_ARGS])
def test_learning_through_the_chosen_action_alone_learns_the_whole_examples_model(args):
    whole_ws = vw.Workspace(["--cb_adf", *args])
    chosen_ws = vw.Workspace(["--cb_adf", *args])
    whole = TextExamples(whole_ws, cached_actions=64)
    chosen = TextExamples(chosen_ws, chosen_alone=True)
    most = 0
    for step, (unlabelled, labelled) in enumerate(stream(13, n=600)):
        most = max(most, len(labelled) - 1)
        whole.learn(labelled)
        if step % 2:  # the learner's way: the shared and labelled lines and how many actions there were
            (label,) = [line for line in labelled[1:] if not line.startswith("|")]
            chosen.learn_chosen(labelled[0], label, actions=len(labelled) - 1)
        else:  # a whole example, as an evaluation's candidate or a warm start passes it
            chosen.learn(labelled)
        assert chosen.predict(unlabelled) == whole.predict(unlabelled)  # every update, not only the end
    assert learned_state(chosen_ws) == learned_state(whole_ws)
    assert chosen_ws.serialize() != whole_ws.serialize()  # the report's figures differ, so the check above has teeth
    assert len(chosen._blanks) == most - 1  # the blank lines are parsed once: as many as the widest example needed


def test_an_example_without_one_labelled_action_or_a_shared_line_is_learned_whole():
    whole_ws = vw.Workspace(["--cb_adf", "-q", "UT"])
    chosen_ws = vw.Workspace(["--cb_adf", "-q", "UT"])
    whole, chosen = TextExamples(whole_ws), TextExamples(chosen_ws, chosen_alone=True)
    shared, first, second = "shared |U seg=1", "|T id=a", "|T id=b"
    for example in ([shared, first, second], [f"0:-1:0.5 {first}", second], [shared, f"0:-1:0.5 {first}", second]):
        whole.learn(example)
        chosen.learn(example)
    assert learned_state(chosen_ws) == learned_state(whole_ws)
    with pytest.raises(VWError):  # two labels: VW refuses the example either way
        chosen.learn([shared, f"0:-1:0.5 {first}", f"0:0:0.5 {second}"])
    with pytest.raises(ValueError):
        whole.learn_chosen(shared, f"0:-1:0.5 {first}", actions=2)


def test_which_options_learn_through_the_chosen_action_alone():
    assert learns_chosen_alone([]) and learns_chosen_alone(["-q", "UT", "--cb_type", "mtr"])
    assert not learns_chosen_alone(["--cb_type", "dr"]) and not learns_chosen_alone(["--cb_type", "sm", "-q", "UT"])
    stored = vw.Workspace(["--cb_adf", "--cb_type", "ips"]).serialize()
    assert not learns_chosen_alone(model_options(stored))
    assert learns_chosen_alone(model_options(vw.Workspace(["--cb_adf", "-q", "UT"]).serialize()))
