"""Settings: one value built once (defaults < environment < arguments) and kept by each instance."""

import pytest

from stylelens import open_index
from stylelens.errors import InvalidArgumentError
from stylelens.settings import SETTINGS, Settings


def test_arguments_beat_the_environment_which_beats_the_default():
    env = {"STYLELENS_K": "7", "STYLELENS_TYPE_BOOST": "0.2"}
    settings = Settings.load(env, type_boost=0.0)
    assert settings.k == 7 and settings.type_boost == 0.0 and settings.identify_k == SETTINGS["identify_k"].default
    assert Settings.load({}).k == SETTINGS["k"].default
    assert settings.replace(k=None).k == 7  # None means "not given"


def test_bad_names_and_values_say_which_setting_and_where():
    with pytest.raises(InvalidArgumentError, match="Unknown setting 'type_bost'"):
        Settings.load({}, type_bost=1)
    with pytest.raises(InvalidArgumentError, match="STYLELENS_K"):
        Settings.load({"STYLELENS_K": "many"})
    with pytest.raises(InvalidArgumentError, match="search .* must be one of"):
        Settings.load({}, search="fast")
    with pytest.raises(AttributeError):
        Settings.load({}).k = 3  # fixed once built


def test_two_indexes_in_one_process_keep_different_settings(built_index, random_embedder):
    index_dir, _, _ = built_index
    plain = open_index(index_dir, Settings.load({}), embedder=random_embedder, type_boost=0.0, identify_k=10)
    boosted = open_index(index_dir, Settings.load({}), embedder=random_embedder, type_boost=1.0, type_boost_min_confidence=0.0)
    assert (plain.settings.type_boost, boosted.settings.type_boost) == (0.0, 1.0)
    differ = 0
    for pid in sorted(plain.store.columns.row_of):
        a, b = plain.similar(pid, k=8), boosted.similar(pid, k=8)
        # No boost: the score is the cosine. A boost of 1: every product of the identified type comes first.
        assert all(p["score"] == p["similarity"] for p in a.products)
        types = [p["type"] == b.identified.type for p in b.products]
        assert types == sorted(types, reverse=True)
        differ += a.ids != b.ids
    assert differ > 0, "the two indexes ranked every product alike: the setting did not reach one of them"


def test_settings_survive_pickling_for_worker_processes():
    import pickle

    settings = Settings.load({}, type_boost=0.3, search="exact")
    again = pickle.loads(pickle.dumps(settings))
    assert again == settings and again.type_boost == 0.3


def test_settings_travel_as_one_json_value_and_are_checked_again():
    settings = Settings.load(environ={}, k=7, type_boost=0.0, host="0.0.0.0")
    assert Settings.from_json(settings.to_json()) == settings
    with pytest.raises(InvalidArgumentError, match="Unknown setting"):
        Settings.from_json('{"no_such_setting": 1}')


def test_serve_workers_get_the_commands_settings_not_the_environments(built_index, random_embedder, monkeypatch):
    """`stylelens serve --workers N` builds its settings once; each worker uses that value, whatever its environment says."""
    from stylelens.service.app import SERVE_ENV, app_from_environment, serve_value

    index_path, _, _ = built_index
    monkeypatch.setenv(SERVE_ENV, serve_value(index_path, Settings.load(environ={}, k=3, batch_wait_ms=0)))
    monkeypatch.setenv("STYLELENS_K", "9")
    app = app_from_environment()
    assert app.state.settings.k == 3
