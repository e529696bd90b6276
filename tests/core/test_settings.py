from __future__ import annotations

from pathlib import Path

import pytest

from services.core.settings import ConfigError, load_settings
from tests.support.databases import EXAMPLE_CONFIG


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_example_config_loads_with_the_seed_roster() -> None:
    s = load_settings(EXAMPLE_CONFIG)
    assert s.timezone == "Asia/Shanghai" and s.queue_team("internet") == "tech"
    assert s.queue_team("nowhere") == "unassigned"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("timezone: Mars/Olympus\n", "timezone"),
        ("kpi: {service_level_seconds: -1}\n", "kpi.service_level_seconds"),
        ("kpi: {fcr_windw_hours: 72}\n", "kpi.fcr_windw_hours"),
        ("teams: [{id: a, queues: [q]}, {id: b, queues: [q]}]\n", "teams[1].queues"),
        ("partitions: zero\n", "partitions"),
    ],
)
def test_bad_config_fails_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text))
    assert key in str(err.value)


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLKPI_KPI__SERVICE_LEVEL_SECONDS", "30")
    monkeypatch.setenv("CALLKPI_KAFKA_BOOTSTRAP", "kafka:9092")
    s = load_settings(write(tmp_path, "kpi: {service_level_seconds: 15}\n"))
    assert s.kpi.service_level_seconds == 30 and s.kafka_bootstrap == "kafka:9092"


def test_unreadable_yaml_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(write(tmp_path, "teams: [\n"))


def test_scorecard_file_is_read_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "s.yaml").write_text(
        "scorecards:\n  - role: cs\n    items: [{id: a, metric: answer_rate, target: 0.95}]\n"
    )
    monkeypatch.chdir("/")
    s = load_settings(write(tmp_path, "scorecard_file: cards/s.yaml\n"))
    assert s.scorecards is not None and s.scorecards.scorecards[0].role == "cs"


def test_a_bad_scorecard_stops_the_start_naming_the_file_and_the_key(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("scorecards:\n  - role: cs\n    items: [{id: a, metric: x}]\n")
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, "scorecard_file: s.yaml\n"))
    assert "s.yaml" in str(err.value) and "scorecards.0.items.0" in str(err.value)


def test_tokens_are_configured_by_hash_and_scope(tmp_path: Path) -> None:
    from services.core.auth import new_token, token_hash

    token = new_token()
    s = load_settings(write(tmp_path, f"auth:\n  tokens:\n    - name: pay\n"
                                      f"      sha256: {token_hash(token)}\n"
                                      f"      scopes: [payroll]\n"))  # fmt: skip
    who = s.auth.principal(token)
    assert who is not None and who.name == "pay" and who.allows("payroll")
    assert not who.allows("admin") and s.auth.principal(token + "x") is None
    with pytest.raises(ConfigError, match=r"auth\.tokens\.0\.scopes\.0"):
        load_settings(write(tmp_path, "auth: {tokens: [{name: a, sha256: " + "0" * 64
                                      + ", scopes: [root]}]}\n"))  # fmt: skip


def test_an_event_limit_that_cannot_fit_a_record_is_refused_naming_both_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CALLKPI_CONFIG", raising=False)
    with pytest.raises(
        ConfigError,
        match="max_event_bytes: 70000 leaves no room in a Kafka record of kafka_max_request_bytes=65536",
    ):
        load_settings(max_event_bytes=70_000, kafka_max_request_bytes=65_536)


def test_a_withheld_pattern_that_is_not_a_regular_expression_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CALLKPI_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="withheld_caller_ids"):
        load_settings(kpi={"withheld_caller_ids": ["(unclosed"]})
