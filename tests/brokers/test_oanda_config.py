"""OandaConfig from the environment: the engine's settings reach the adapter
exactly, and the token cannot leak through a repr or an error."""
import pytest

from fastexec.brokers.oanda import OandaBroker, OandaConfig, OandaConfigError

TOKEN = "0123456789abcdef-SECRET-TOKEN-fedcba9876543210"


def test_practice_is_the_default_environment():
    cfg = OandaConfig.from_env({"OANDA_API_KEY": TOKEN, "OANDA_ACCOUNT_ID": "101-004-1435156-001"})
    assert cfg.environment == "practice"
    assert cfg.rest_base == "https://api-fxpractice.oanda.com"
    assert cfg.stream_base == "https://stream-fxpractice.oanda.com"
    assert cfg.account_ids == ("101-004-1435156-001",)
    assert cfg.pool_size == 10 and cfg.keepalive_s == 30.0
    assert cfg.max_requests_per_s == 100 and cfg.max_new_connections_per_s == 2


def test_live_environment_uses_fxtrade_hosts():
    cfg = OandaConfig.from_env({"OANDA_API_KEY": TOKEN, "OANDA_ACCOUNT_ID": "001-001-1-001", "OANDA_ENVIRONMENT": "LIVE"})
    assert cfg.rest_base == "https://api-fxtrade.oanda.com"
    assert cfg.stream_base == "https://stream-fxtrade.oanda.com"


def test_rest_override_also_moves_streams_for_a_single_port_simulator():
    cfg = OandaConfig.from_env({"OANDA_API_KEY": TOKEN, "OANDA_REST_URL": "http://127.0.0.1:8080/"})
    assert cfg.rest_base == "http://127.0.0.1:8080"
    assert cfg.stream_base == "http://127.0.0.1:8080"
    cfg2 = OandaConfig.from_env(
        {"OANDA_API_KEY": TOKEN, "OANDA_REST_URL": "http://127.0.0.1:1", "OANDA_STREAM_URL": "http://127.0.0.1:2"}
    )
    assert cfg2.stream_base == "http://127.0.0.1:2"


def test_several_accounts_and_numeric_overrides():
    cfg = OandaConfig.from_env(
        {
            "OANDA_API_KEY": TOKEN,
            "OANDA_ACCOUNT_ID": "101-001-1-001, 101-001-1-002",
            "OANDA_MAX_REQUESTS_PER_S": "50",
            "OANDA_POOL_SIZE": "4",
        }
    )
    assert cfg.account_ids == ("101-001-1-001", "101-001-1-002")
    assert cfg.max_requests_per_s == 50 and cfg.pool_size == 4


@pytest.mark.parametrize("value, style", [(None, "legacy"), ("", "legacy"), ("modern", "modern"), (" Legacy ", "legacy"),
                                          ("MODERN", "modern")])
def test_guaranteed_stop_loss_style_from_the_environment(value, style):
    env = {"OANDA_API_KEY": TOKEN}
    if value is not None:
        env["OANDA_GSLO_STYLE"] = value
    assert OandaConfig.from_env(env).gslo_style == style
    assert OandaConfig(token=TOKEN).gslo_style == "legacy"
    assert OandaConfig.from_env(env, gslo_style="modern").gslo_style == "modern"


def test_unknown_guaranteed_stop_loss_style_is_refused():
    with pytest.raises(OandaConfigError, match="OANDA_GSLO_STYLE"):
        OandaConfig(token=TOKEN, gslo_style="v21")


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OANDA_API_KEY": "  "},
        {"OANDA_API_KEY": TOKEN, "OANDA_ENVIRONMENT": "sandbox"},
        {"OANDA_API_KEY": TOKEN, "OANDA_POOL_SIZE": "ten"},
        {"OANDA_API_KEY": TOKEN, "OANDA_POOL_SIZE": "0"},
        {"OANDA_API_KEY": TOKEN, "OANDA_GSLO_STYLE": "new"},
    ],
)
def test_bad_environment_is_refused_without_echoing_the_token(env):
    with pytest.raises(OandaConfigError) as err:
        OandaConfig.from_env(env)
    assert TOKEN not in str(err.value)


def test_token_absent_from_reprs():
    cfg = OandaConfig.from_env({"OANDA_API_KEY": TOKEN, "OANDA_ACCOUNT_ID": "101-001-1-001"})
    broker = OandaBroker(cfg)
    for text in (repr(cfg), str(cfg), repr(broker), repr(broker.http), repr(cfg.with_(pool_size=3))):
        assert TOKEN not in text
        assert TOKEN[:12] not in text
