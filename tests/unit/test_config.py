from pathlib import Path

import pytest

from billing_oss.core.errors import ConfigError
from billing_oss.server import config


def test_defaults_come_from_the_shipped_file() -> None:
    cfg = config.load(env={})
    assert cfg.http.host == "127.0.0.1" and cfg.http.port == 8080
    assert cfg.database.url == "" and cfg.database.data_dir == "./var/pgdata"
    assert cfg.demo_catalog_path().is_file()


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[http]\nport = 9000\nhost = "0.0.0.0"\n[log]\nlevel = "debug"\n')
    env = {"BILLING_OSS_HTTP_PORT": "9100", "BILLING_OSS_DATABASE_POOL_MAX": "20",
           "BILLING_OSS_CATALOG_LOAD_DEMO": "false", "UNRELATED": "x"}
    cfg = config.load(path, env=env, overrides={"log.level": "warning", "http.host": None})
    assert cfg.http.port == 9100
    assert cfg.http.host == "0.0.0.0"
    assert cfg.database.pool_max == 20
    assert cfg.catalog.load_demo is False
    assert cfg.log.level == "warning"


@pytest.mark.parametrize(
    ("toml", "env", "named"),
    [
        ('[http]\nport = "abc"\n', {}, "http.port"),
        ("[http]\nprot = 1\n", {}, "prot"),
        ("[nosuch]\na = 1\n", {}, "[nosuch]"),
        ("", {"BILLING_OSS_HTTP_PORT": "99999"}, "http.port"),
        ("", {"BILLING_OSS_LOG_LEVEL": "loud"}, "log.level"),
        ("", {"BILLING_OSS_HTTP_PROT": "1"}, "BILLING_OSS_HTTP_PROT"),
        ("", {"BILLING_OSS_DATABASE_POOL_MIN": "5", "BILLING_OSS_DATABASE_POOL_MAX": "2"},
         "pool_min"),
        ("[http\n", {}, "not valid TOML"),
        ('[console]\ntimezone = "Mars/Olympus"\n', {}, "console.timezone"),
        ("", {"BILLING_OSS_CONSOLE_SESSION_MINUTES": "0"}, "console.session_minutes"),
        ("", {"BILLING_OSS_CONSOLE_SUMMARY_SECONDS": "-1"}, "console.summary_seconds"),
    ],
)
def test_bad_configuration_names_the_key(tmp_path: Path, toml: str, env: dict[str, str],
                                         named: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        config.load(path, env=env)
    assert named in str(caught.value)
    assert caught.value.exit_status == 2


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "absent.toml", env={})


def test_the_demo_names_a_complete_fictional_seller_and_a_deployment_is_warned(
        tmp_path: Path) -> None:
    demo = config.load(env={}).billing  # no file, no database URL: the quickstart
    assert demo.einvoice_gaps() == [] and demo.printed_gaps() == []
    assert demo.seller()["vat_id"] and demo.seller()["iban"] and demo.seller()["city"]
    path = tmp_path / "c.toml"
    path.write_text('[database]\nurl = "postgresql://db.example.net/billing"\n')
    for deployed in (config.load(path, env={}),
                     config.load(env={"BILLING_OSS_DATABASE_URL": "postgresql://db/billing"}),
                     config.load(env={}, overrides={"database.url": "postgresql://db/b"})):
        assert deployed.billing.seller_name != demo.seller_name
        assert deployed.billing.einvoice_gaps() == ["billing.seller_vat_id"]
        assert deployed.billing.printed_gaps() == [
            "billing.seller_address", "billing.seller_postcode", "billing.seller_city",
            "billing.seller_iban"]
    # the demo's seller gives way to one the environment names
    named = config.load(env={"BILLING_OSS_BILLING_SELLER_NAME": "Real SA"}).billing
    assert named.seller_name == "Real SA" and named.seller_vat_id == demo.seller_vat_id
