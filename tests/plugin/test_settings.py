"""Settings live in QgsSettings; THINK2SEG_BACKEND_URL and THINK2SEG_TOKEN_FILE win."""

from __future__ import annotations

from think2seg_qgis.settings import (
    HISTORY_LENGTH,
    MODE_LOCAL,
    MODE_REMOTE,
    TOKEN_IN_AUTHDB,
    BackendSettings,
    RunSettings,
    load_backend_settings,
    load_run_settings,
    remember_query,
    save_backend_settings,
    save_run_settings,
)


def test_backend_settings_round_trip(qgis_app):
    from qgis.core import QgsApplication, QgsSettings

    manager = QgsApplication.authManager()
    if not manager.masterPasswordIsSet():
        assert manager.setMasterPassword("think2seg-tests", True)
    settings = BackendSettings(
        mode=MODE_REMOTE, url="http://gpu:9000/", token="abc", port=9001, device="cpu", token_storage=TOKEN_IN_AUTHDB
    )
    save_backend_settings(settings)
    loaded = load_backend_settings()
    assert loaded.mode == MODE_REMOTE and loaded.url == "http://gpu:9000/" and loaded.port == 9001
    assert loaded.effective_url() == "http://gpu:9000"
    # The token lives in QGIS's authentication database, encrypted; QGIS3.ini only names its config.
    assert loaded.token == "" and loaded.authcfg
    assert QgsSettings().value("think2seg/backend/token") is None
    assert "abc" not in [str(QgsSettings().value(k)) for k in QgsSettings().allKeys() if k.startswith("think2seg")]
    assert loaded.read_token() == "abc"
    save_backend_settings(BackendSettings())


def test_local_mode_uses_the_port_and_the_token_file(qgis_app, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("secret\n")
    settings = BackendSettings(mode=MODE_LOCAL, port=8899, token_file=str(token_file))
    assert settings.effective_url() == "http://127.0.0.1:8899"
    assert settings.read_token() == "secret"
    assert BackendSettings(token_file=str(tmp_path / "missing")).read_token() == ""


def test_environment_takes_precedence(qgis_app, tmp_path, monkeypatch):
    token_file = tmp_path / "env-token"
    token_file.write_text("from-env")
    monkeypatch.setenv("THINK2SEG_BACKEND_URL", "http://127.0.0.1:5555/")
    monkeypatch.setenv("THINK2SEG_TOKEN_FILE", str(token_file))
    settings = BackendSettings(mode=MODE_REMOTE, url="http://elsewhere:1", token="typed")
    assert settings.effective_url() == "http://127.0.0.1:5555"
    assert settings.read_token() == "from-env"
    assert settings.url_from_environment()


def test_query_history_is_recent_first_without_duplicates(qgis_app):
    run = RunSettings()
    for query in ["a", "b", "a", "c"]:
        remember_query(run, query)
    assert run.history == ["c", "a", "b"]
    for i in range(HISTORY_LENGTH + 5):
        remember_query(run, f"q{i}")
    assert len(run.history) == HISTORY_LENGTH
    save_run_settings(run)
    assert load_run_settings().history == run.history
    save_run_settings(RunSettings())


def test_constrained_answers_are_remembered_and_sent_only_when_asked(qgis_app):
    from think2seg_qgis.segmentation import SegmentationOptions

    assert RunSettings().constrain_answer is False  # off by default (README: not measured with real weights)
    save_run_settings(RunSettings(constrain_answer=True))
    assert load_run_settings().constrain_answer is True
    save_run_settings(RunSettings())
    assert load_run_settings().constrain_answer is False
    assert "constrain_answer" not in SegmentationOptions().to_json()
    assert SegmentationOptions(constrain_answer=True).to_json()["constrain_answer"] is True
