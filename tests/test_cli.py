"""The fastexec command, run as users run it (a subprocess)."""
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "fastexec", *args], capture_output=True, text=True, timeout=60)


def test_help_lists_commands():
    out = run("--help")
    assert out.returncode == 0
    for cmd in ("serve", "sim", "instruments"):
        assert cmd in out.stdout


def test_unknown_command_fails_with_usage():
    out = run("frobnicate")
    assert out.returncode == 2
    assert "unknown command" in out.stderr


def test_instruments_prints_table_from_compiled_core():
    out = run("instruments")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    names = {line.split()[0] for line in lines[2:-1]}
    majors = {"EUR_USD", "GBP_USD", "USD_JPY", "USD_CHF", "AUD_USD", "USD_CAD", "NZD_USD"}
    assert majors <= names
    assert "XAU_USD" in names
    assert lines[-1] == f"{len(names)} instruments"
    eur = next(line for line in lines if line.startswith("EUR_USD"))
    assert eur.split()[2] == "5" and eur.split()[3] == "-4"
