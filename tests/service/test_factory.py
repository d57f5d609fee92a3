"""The app factory and its configuration: defaults, then MARQUEE_* variables, then test overrides."""

from __future__ import annotations

import dataclasses

import pytest

from service import config, create_app


def test_defaults_environment_and_overrides(tmp_path):
    env = {"MARQUEE_DATA_DIR": str(tmp_path), "MARQUEE_EPSILON": "0.3", "MARQUEE_LEARNER": "off"}
    loaded = config.load(environ=env)
    assert loaded["EPSILON"] == 0.3 and loaded["LEARNER"] is False
    assert loaded["DATABASE"] == str(tmp_path / "marquee.sqlite3")
    assert loaded["REWARD_WAIT_SECONDS"] == config.SETTINGS["REWARD_WAIT_SECONDS"][0]
    overridden = config.load({"EPSILON": 0.05, "DATABASE": str(tmp_path / "x.db")}, environ=env)
    assert overridden["EPSILON"] == 0.05 and overridden["DATABASE"] == str(tmp_path / "x.db")


def test_what_bandits_reads_is_handed_down_typed(tmp_path):
    env = {
        "MARQUEE_DATA_DIR": str(tmp_path),
        "MARQUEE_LEARNER_BATCH": "7",
        "MARQUEE_AUTO_OPTIMIZE": "yes",
        "MARQUEE_EPSILON_DECAY_AFTER": "500",
        "MARQUEE_REWARD_VALUES": "click=0.5,play=1,completed=1,thumbs_up=1,thumbs_down=-1",
    }
    typed = config.typed(config.load(environ=env))
    assert typed.learner_batch == 7 and typed.auto_optimize is True and typed.epsilon_decay_after == 500.0
    assert typed.reward_values["click"] == 0.5 and typed.database == str(tmp_path / "marquee.sqlite3")
    for item in dataclasses.fields(typed):  # each field holds the setting of its name, as its declared type
        assert item.name.upper() in config.SETTINGS, item.name
        expected = {"int": int, "float": float, "str": str, "bool": bool}.get(str(item.type), dict)
        assert type(getattr(typed, item.name)) is expected, item.name
    app = create_app({"DATA_DIR": str(tmp_path / "app"), "LEARNER": False, "MODEL_VERSIONS_KEPT": 3})
    assert app.extensions["marquee"]["deployment"].model_versions_kept == 3


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MARQUEE_EPSILON", "lots", "MARQUEE_EPSILON"),
        ("MARQUEE_EPSILON", "1.5", "EPSILON must be in [0, 1]"),
        ("MARQUEE_LEARNER", "perhaps", "MARQUEE_LEARNER"),
        ("MARQUEE_DEFAULT_REWARD", "-2", "DEFAULT_REWARD"),
        ("MARQUEE_LEARNER_CPU", "first", "LEARNER_CPU must be last, any or one of the CPUs"),
        ("MARQUEE_LEARNER_CPU", "4096", "LEARNER_CPU must be last, any or one of the CPUs"),
        ("MARQUEE_LEARNER_CPU", "-1", "got '-1'"),
    ],
)
def test_bad_settings_are_named(name, value, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config.load(environ={name: value})


def test_factory_creates_database_and_initial_models(tmp_path):
    app = create_app({"DATA_DIR": str(tmp_path / "d"), "LEARNER": False})
    assert (tmp_path / "d" / "marquee.sqlite3").exists()
    body = app.test_client().get("/v1/policies").get_json()
    assert [(p["name"], p["model"]["version"]) for p in body["policies"]] == [
        ("titles", 0),
        ("artwork", 0),
        ("actions", 0),
    ]
    assert app.test_client().get("/healthz").get_json()["learner"] == "disabled"
    assert app.test_client().get("/nowhere").get_json()["error"]["code"] == "not_found"


def test_init_db_and_demo_catalog_commands(tmp_path):
    app = create_app({"DATA_DIR": str(tmp_path / "d"), "LEARNER": False})
    runner = app.test_cli_runner()
    assert "database ready" in runner.invoke(args=["init-db"]).output
    result = runner.invoke(args=["demo-catalog", "--titles", "3", "--seed", "4"])
    assert result.exit_code == 0 and "3 titles" in result.output
    assert "0 titles and 0 artworks added" in runner.invoke(args=["demo-catalog", "--titles", "3"]).output
    titles = app.test_client().get("/v1/titles").get_json()["titles"]
    assert [t["id"] for t in titles] == ["t001", "t002", "t003"]
    learn = runner.invoke(args=["learn", "--once"])
    assert learn.exit_code == 0 and "titles: learned 0 events" in learn.output


def test_demo_catalog_is_deterministic():
    from assets.demo import demo_titles

    first = [(body, [(a, t, d) for a, t, d in arts]) for body, arts in demo_titles(seed=9, count=3)]
    second = [(body, [(a, t, d) for a, t, d in arts]) for body, arts in demo_titles(seed=9, count=3)]
    other = [body for body, _ in demo_titles(seed=10, count=3)]
    assert first == second
    assert [b for b, _ in first] != other
    for _body, artworks in first:
        assert 3 <= len(artworks) <= 6
