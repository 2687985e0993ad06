"""Settings come from the seed's variable names; bad values stop start-up."""
import pytest

from fastexec.config import MONEY_SCALE, RATE_SCALE, ConfigError, Settings


def test_defaults_match_seed_readme():
    s = Settings.from_env({})
    assert s.max_concurrent_orders == 50
    assert s.max_position_size == 100_000
    assert s.max_leverage == 30 * RATE_SCALE
    assert s.prometheus_port == 8091
    assert s.port == 8004
    assert s.host == "127.0.0.1"
    assert s.oanda_environment == "practice"
    assert s.log_level == "info"
    assert not s.uses_oanda


def test_oanda_credentials_select_oanda_broker():
    s = Settings.from_env({"OANDA_API_KEY": "k" * 20, "OANDA_ACCOUNT_ID": "101-001-1-001"})
    assert s.uses_oanda


def test_api_key_never_in_repr():
    s = Settings.from_env({"OANDA_API_KEY": "secret-token-value-123", "OANDA_ACCOUNT_ID": "101-001-1-001",
                           "FASTEXEC_API_TOKENS": "another-secret-token-456:*"})
    assert "secret-token-value-123" not in repr(s)
    assert "another-secret-token-456" not in repr(s)


def test_key_without_account_is_rejected():
    with pytest.raises(ConfigError, match="OANDA_ACCOUNT_ID"):
        Settings.from_env({"OANDA_API_KEY": "k" * 20})


@pytest.mark.parametrize(
    "name,value,fragment",
    [
        ("MAX_POSITION_SIZE", "ten", "MAX_POSITION_SIZE"),
        ("MAX_POSITION_SIZE", "-1", "below the minimum"),
        ("MAX_LEVERAGE", "abc", "MAX_LEVERAGE"),
        ("MAX_LEVERAGE", "0", "MAX_LEVERAGE=0 would refuse every order"),
        ("MAX_LEVERAGE", "0.000", "MAX_LEVERAGE=0 would refuse every order"),
        ("MAX_DAILY_LOSS", "10.0000001", "more decimals"),
        ("MAX_DAILY_LOSS", "NaN", "finite"),
        ("OANDA_ENVIRONMENT", "sandbox", "practice"),
        ("LOG_LEVEL", "verbose", "LOG_LEVEL"),
        ("FASTEXEC_API_TOKENS", "short:*", "16 characters"),
        ("FASTEXEC_API_TOKENS", "abcdefghijklmnopqrstuvwxyz", "token:account"),
        ("FASTEXEC_SIM_CURRENCY", "DOLLAR", "currency"),
        ("FASTEXEC_BUSY_POLL_US", "fast", "FASTEXEC_BUSY_POLL_US"),
        ("FASTEXEC_BUSY_POLL_US", "-5", "below the minimum"),
        ("FASTEXEC_BUSY_POLL_US", "1000001", "above the maximum"),
    ],
)
def test_malformed_value_names_the_variable(name, value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        Settings.from_env({name: value})


def test_money_and_rates_are_exact_fixed_point():
    s = Settings.from_env({"MAX_DAILY_LOSS": "1234.567891", "REQUIRED_MARGIN_RATIO": "0.033333333333"})
    assert s.max_daily_loss == 1234567891
    assert s.required_margin_ratio == 33333333333
    assert isinstance(s.max_daily_loss, int) and MONEY_SCALE == 10**6


def test_api_tokens_are_scoped_to_accounts():
    s = Settings.from_env({"FASTEXEC_API_TOKENS": "tok-aaaaaaaaaaaaaaaa:acct-1, acct-2;tok-bbbbbbbbbbbbbbbb:*"})
    assert s.api_tokens == {
        "tok-aaaaaaaaaaaaaaaa": frozenset({"acct-1", "acct-2"}),
        "tok-bbbbbbbbbbbbbbbb": frozenset({"*"}),
    }


def test_oanda_adapter_settings_pass_through():
    s = Settings.from_env({"OANDA_MAX_REQUESTS_PER_S": "50", "OANDA_POOL_SIZE": "4", "OANDA_GSLO_STYLE": "Modern",
                           "FASTEXEC_JOURNAL_DURABILITY": "none"})
    assert (s.oanda_max_requests_per_s, s.oanda_pool_size, s.oanda_gslo_style, s.journal_durability) == (50, 4, "modern", "none")
    with pytest.raises(ConfigError, match="OANDA_GSLO_STYLE"):
        Settings.from_env({"OANDA_GSLO_STYLE": "new"})
    with pytest.raises(ConfigError, match="FASTEXEC_JOURNAL_DURABILITY"):
        Settings.from_env({"FASTEXEC_JOURNAL_DURABILITY": "sometimes"})


def test_journal_direct_defaults_on_and_reaches_the_writer(tmp_path):
    """FASTEXEC_JOURNAL_DIRECT=false keeps the synchronous modes on the writer thread; the
    default writes batches directly (and /health/detailed says which)."""
    import asyncio

    from fastexec.journal.integration import JournaledEngine

    assert Settings.from_env({}).journal_direct is True
    with pytest.raises(ConfigError, match="FASTEXEC_JOURNAL_DIRECT"):
        Settings.from_env({"FASTEXEC_JOURNAL_DIRECT": "maybe"})
    assert Settings.from_env({}).journal_commit_delay_us == 100
    assert Settings.from_env({"FASTEXEC_JOURNAL_COMMIT_DELAY_US": "0"}).journal_commit_delay_us == 0
    for bad in ("-5", "10001", "0.5"):
        with pytest.raises(ConfigError, match="FASTEXEC_JOURNAL_COMMIT_DELAY_US"):
            Settings.from_env({"FASTEXEC_JOURNAL_COMMIT_DELAY_US": bad})

    async def path(env):
        s = Settings.from_env(env)  # as the service builds it
        je = JournaledEngine(s, durability=s.journal_durability, journal_dir=str(tmp_path / str(len(env))))
        await je.start()
        try:
            j = je.health()["journal"]
            assert j["spare_segment"] == "none"  # made only once a segment is half full
            return j["writes"] if j["writes"] != "direct" else f"direct {j['commit_delay_us']}"
        finally:
            await je.stop()

    assert asyncio.run(path({})) == "direct 100"
    assert asyncio.run(path({"FASTEXEC_JOURNAL_COMMIT_DELAY_US": "250"})) == "direct 250"
    assert asyncio.run(path({"FASTEXEC_JOURNAL_DIRECT": "false"})) == "thread"
    assert asyncio.run(path({"FASTEXEC_JOURNAL_DIRECT": "0", "FASTEXEC_JOURNAL_DURABILITY": "none"})) == "loop"


def test_sim_history_bounds_the_embedded_venue_and_zero_keeps_everything():
    import asyncio

    from fastexec.engine import Engine

    assert Settings.from_env({}).sim_history == 20_000
    for raw, expected in (("500", 500), ("0", None)):
        eng = Engine(Settings.from_env({"FASTEXEC_SIM_HISTORY": raw}))
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(eng.start())
            venue = eng.broker.venue
            assert all(acct.history == expected for acct in venue.accounts.values())
        finally:
            loop.run_until_complete(eng.stop())
            loop.close()
    with pytest.raises(ConfigError, match="FASTEXEC_SIM_HISTORY"):
        Settings.from_env({"FASTEXEC_SIM_HISTORY": "-1"})


def test_busy_poll_is_off_unless_asked_for():
    assert Settings.from_env({}).busy_poll_us == 0
    assert Settings.from_env({"FASTEXEC_BUSY_POLL_US": "250"}).busy_poll_us == 250


# Huge values: each is refused by Settings.from_env with the variable named, not
# by a traceback from the core inside engine.start() (or the OOM killer).
HUGE = [
    ("MAX_POSITION_SIZE", "99999999999999999999999"),
    ("MAX_POSITION_SIZE", "1000000000001"),
    ("MAX_LEVERAGE", "1e30"),
    ("MAX_LEVERAGE", "1000000.000000000001"),
    ("MAX_DAILY_LOSS", "1e30"),
    ("MAX_DAILY_LOSS", "9000000000.000001"),
    ("MAX_UNITS_PER_ORDER", "99999999999999999999"),
    ("MAX_POSITIONS_PER_INSTRUMENT", "99999999999999999999999"),
    ("MAX_CONCURRENT_ORDERS", "1000000001"),
    ("MAX_ORDERS_PER_SECOND", "1000000001"),
    ("REQUIRED_MARGIN_RATIO", "5"),
    ("FASTEXEC_SIM_BALANCE", "1e40"),
    ("FASTEXEC_SIM_ACCOUNTS", "100000000"),
    ("FASTEXEC_SIM_ACCOUNTS", "1001"),
    ("FASTEXEC_PORT", "99999"),
    ("PROMETHEUS_PORT", "70000"),
]


@pytest.mark.parametrize("name,value", HUGE)
def test_huge_value_is_a_config_error_naming_the_variable(name, value):
    with pytest.raises(ConfigError, match=rf"^{name}=.* is above the maximum"):
        Settings.from_env({name: value}, dotenv=False)


async def test_largest_allowed_values_start_the_engine(tmp_path):
    """Scenario: every limit at its documented maximum is accepted by the core
    too (the maxima are the core's bounds, not stricter or looser)."""
    from fastexec.engine import Engine

    settings = Settings.from_env({
        "FASTEXEC_DATA_DIR": str(tmp_path), "MAX_POSITION_SIZE": "1000000000000", "MAX_LEVERAGE": "1000000",
        "MAX_DAILY_LOSS": "9000000000", "MAX_UNITS_PER_ORDER": "1000000000000",
        "MAX_POSITIONS_PER_INSTRUMENT": "1000000000", "MAX_CONCURRENT_ORDERS": "1000000000",
        "MAX_ORDERS_PER_SECOND": "1000000000", "REQUIRED_MARGIN_RATIO": "1", "FASTEXEC_SIM_BALANCE": "9000000000",
        "FASTEXEC_SIM_ACCOUNTS": "2",
    }, dotenv=False)
    engine = Engine(settings)
    await engine.start()
    try:
        assert len(engine.account_ids) == 2
    finally:
        await engine.stop()


async def test_huge_value_in_serve_exits_2_with_the_variable_named(tmp_path):
    """Scenario: `fastexec serve` with MAX_LEVERAGE=1e30: rc 2, one line, no traceback."""
    import asyncio
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OANDA_", "FASTEXEC_", "MAX_"))}
    env.update({"FASTEXEC_DATA_DIR": str(tmp_path / "data"), "MAX_LEVERAGE": "1e30"})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fastexec", "serve", "--port", "0", "--metrics-port", "0", env=env, cwd=str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 2, err
    assert "MAX_LEVERAGE=1e30 is above the maximum" in err.decode() and b"Traceback" not in err
