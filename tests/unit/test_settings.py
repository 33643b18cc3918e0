"""Settings: MEDBRIDGE_ environment variables and an optional TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from medbridge.demo.wiring import demo_settings
from medbridge.settings import Settings, fhir_config


def test_defaults_are_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MEDBRIDGE_DATABASE_URL", "MEDBRIDGE_HTTP_PORT", "MEDBRIDGE_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.database_url == "sqlite:///var/medbridge.db"
    assert settings.http_port == 8000
    assert settings.admin_api_key is None


def test_environment_wins_over_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "medbridge.toml"
    config.write_text('http_port = 9100\ndatabase_url = "sqlite:///elsewhere.db"\n')
    monkeypatch.setenv("MEDBRIDGE_CONFIG_FILE", str(config))
    monkeypatch.setenv("MEDBRIDGE_HTTP_PORT", "9200")
    monkeypatch.setenv("MEDBRIDGE_ADMIN_API_KEY", "s3cret")
    settings = Settings()
    assert settings.http_port == 9200
    assert settings.database_url == "sqlite:///elsewhere.db"
    assert settings.admin_api_key is not None
    assert "s3cret" not in repr(settings)


def test_bad_values_are_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDBRIDGE_HTTP_PORT", "99999")
    with pytest.raises(ValidationError, match="http_port"):
        Settings()


def test_one_config_file_serves_settings_and_the_fhir_table(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "medbridge.toml"
    config.write_text(
        'http_port = 9300\n\n[fhir]\npseudonym_secret = "sixteen-plus-characters"\n'
        'timezone = "America/Chicago"\n'
    )
    monkeypatch.setenv("MEDBRIDGE_CONFIG_FILE", str(config))
    monkeypatch.delenv("MEDBRIDGE_HTTP_PORT", raising=False)
    monkeypatch.setenv("MEDBRIDGE_FHIR_TIMEZONE", "UTC")  # environment wins over the file
    assert Settings().http_port == 9300
    fhir = fhir_config()
    assert fhir.pseudonym_secret is not None
    assert fhir.pseudonym_secret.get_secret_value() == "sixteen-plus-characters"
    assert fhir.timezone == "UTC"


@pytest.mark.parametrize(
    ("rule", "why"),
    [
        ({"metric": "acks_overdue"}, "needs window"),
        ({"metric": "dead_letters", "hours": 1}, "takes no window"),
        ({"metric": "error_rate", "minutes": 5}, "needs a connector"),
        ({"metric": "error_rate", "minutes": 5, "connector": "x12", "above": 2}, "a fraction"),
        ({"metric": "backlog", "connector": "x12"}, "only error_rate takes a connector"),
        ({"metric": "partner_silent_hours", "partner": "NOPE"}, "not a configured partner"),
        ({"metric": "acks_overdue", "hours": 1, "minutes": 5}, "hours or minutes"),
        ({"metric": "backlog", "sender": "hl7v2/PYXIS@H1"}, "takes a partner or sender"),
        ({"metric": "partner_silent_hours", "sender": "PYXIS"}, "sender"),
    ],
)
def test_an_alert_rule_that_does_not_fit_its_metric_is_refused(
    monkeypatch: pytest.MonkeyPatch, rule: dict[str, object], why: str
) -> None:
    monkeypatch.delenv("MEDBRIDGE_CONFIG_FILE", raising=False)
    with pytest.raises(ValidationError, match=why):
        Settings(alert_rules=[{"name": "r", **rule}])


def test_the_error_rate_needs_the_embedded_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDBRIDGE_CONFIG_FILE", raising=False)
    rule = {"name": "r", "metric": "error_rate", "minutes": 5, "connector": "hl7v2"}
    assert Settings(alert_rules=[rule]).alert_rules[0].rule().scope == "hl7v2"
    with pytest.raises(ValidationError, match="JetStream"):
        Settings(alert_rules=[rule], bus_url="nats://127.0.0.1:4222")
    silent = {"name": "s", "metric": "partner_silent_hours", "sender": "hl7v2/PYXIS@H1"}
    assert Settings(alert_rules=[silent]).alert_rules[0].rule().scope == "hl7v2/PYXIS@H1"
    with pytest.raises(ValidationError, match="JetStream"):
        Settings(alert_rules=[silent], bus_url="nats://127.0.0.1:4222")


def test_tracing_is_off_unless_an_otlp_endpoint_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDBRIDGE_OTLP_ENDPOINT", raising=False)
    assert Settings().otlp_endpoint is None
    monkeypatch.setenv("MEDBRIDGE_OTLP_ENDPOINT", "http://collector:4318/v1/traces")
    monkeypatch.setenv("MEDBRIDGE_OTLP_SERVICE_NAME", "medbridge-h1")
    settings = Settings()
    assert settings.otlp_endpoint == "http://collector:4318/v1/traces"
    assert settings.otlp_service_name == "medbridge-h1"
    monkeypatch.setenv("MEDBRIDGE_OTLP_ENDPOINT", "collector:4317")  # gRPC-style, no scheme
    with pytest.raises(ValidationError, match="otlp_endpoint"):
        Settings()


def test_consumption_is_summarised_by_default_and_the_demo_summarises_per_minute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("MEDBRIDGE_CONFIG_FILE", "MEDBRIDGE_ERP_GL_POSTING"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.erp_gl_posting == "summarised"
    assert (settings.erp_summary_period, settings.erp_summary_grace) == ("hour", 300.0)
    demo = demo_settings(settings)
    assert (demo.erp_summary_period, demo.erp_summary_grace, demo.erp_summary_interval) == (
        "minute",
        10.0,
        5.0,
    )
    config = tmp_path / "medbridge.toml"
    config.write_text('erp_summary_period = "day"\n')
    monkeypatch.setenv("MEDBRIDGE_CONFIG_FILE", str(config))
    monkeypatch.setenv("MEDBRIDGE_ERP_SUMMARY_GRACE", "60")
    chosen = demo_settings(Settings())  # what the file and the environment set stays
    assert (chosen.erp_summary_period, chosen.erp_summary_grace) == ("day", 60.0)
    assert chosen.erp_summary_interval == 5.0
