"""scripts/fast_install.py: uv gets pip's indexes, find-links and constraints; without uv, or when uv fails, pip does
the install with the same arguments."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import fast_install  # noqa: E402


def test_uv_gets_what_pip_is_configured_with(monkeypatch):
    monkeypatch.setattr(fast_install, "_pip_config", lambda python: {
        "extra-index-url": "file:///opt/a/simple file:///opt/b/simple", "find-links": "/opt/wheels",
        "constraint": "/etc/caps.txt", "cert": "/etc/ssl/x.pem"})
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels /opt/more")
    flags = fast_install.uv_flags("python")
    assert flags[:2] == ["--index-strategy", "unsafe-best-match"]           # choose among indexes as pip does
    pairs = list(zip(flags[2::2], flags[3::2]))
    assert pairs == [("--extra-index-url", "file:///opt/a/simple"), ("--extra-index-url", "file:///opt/b/simple"),
                     ("--find-links", "/opt/more"), ("--find-links", "/opt/wheels"), ("--constraint", "/etc/caps.txt")]


def test_pip_config_is_read_from_pips_own_listing(tmp_path, monkeypatch):
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nextra-index-url = file:///somewhere/simple\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    assert fast_install._pip_config(sys.executable)["extra-index-url"] == "file:///somewhere/simple"


def _record(monkeypatch, uv_exit: int):
    calls = []

    class Done:
        def __init__(self, code):
            self.returncode = code

    def run(cmd, *args, **kwargs):
        calls.append(cmd)
        return Done(uv_exit if cmd[0] == "/bin/uv" else 0)

    monkeypatch.setattr(fast_install.subprocess, "run", run)
    monkeypatch.setattr(fast_install, "uv_flags", lambda python: ["--index-strategy", "unsafe-best-match"])
    return calls


def test_uv_installs_when_it_is_there(monkeypatch):
    calls = _record(monkeypatch, uv_exit=0)
    monkeypatch.setattr(fast_install, "uv_binary", lambda: "/bin/uv")
    assert fast_install.install("/v/bin/python", ["-q", "numpy==2.1.3"]) == 0
    assert calls == [["/bin/uv", "pip", "install", "--python", "/v/bin/python", "--compile-bytecode", "--index-strategy",
                      "unsafe-best-match", "-q", "numpy==2.1.3"]]


def test_pip_installs_when_uv_fails_or_is_missing(monkeypatch):
    calls = _record(monkeypatch, uv_exit=2)
    monkeypatch.setattr(fast_install, "uv_binary", lambda: "/bin/uv")
    assert fast_install.install("/v/bin/python", ["-q", "numpy==2.1.3"]) == 0
    assert calls[-1] == ["/v/bin/python", "-m", "pip", "install", "--compile", "-q", "numpy==2.1.3"] and len(calls) == 2
    calls.clear()
    monkeypatch.setattr(fast_install, "uv_binary", lambda: None)
    fast_install.install("/v/bin/python", ["-q", "x"])
    assert calls == [["/v/bin/python", "-m", "pip", "install", "--compile", "-q", "x"]]


def test_uv_binary_comes_from_the_environment_only_when_it_is_executable(tmp_path, monkeypatch):
    monkeypatch.setenv("DLDNA_UV", str(tmp_path / "missing"))
    assert fast_install.uv_binary() is None
    exe = tmp_path / "uv"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("DLDNA_UV", str(exe))
    assert fast_install.uv_binary() == str(exe)


def test_the_set_up_left_the_heavy_modules_compiled():
    """Without bytecode (uv's default) and with $PYTHONDONTWRITEBYTECODE, every kernel compiles torch from source."""
    import importlib.util

    import matplotlib
    import torch
    import torch._dynamo

    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        import pytest
        pytest.skip("not running in the set-up's .venv")
    for module in (torch, torch._dynamo, matplotlib):
        cached = Path(importlib.util.cache_from_source(module.__file__))
        assert cached.is_file(), f"{cached} is missing: the set-up did not compile bytecode (uv --compile-bytecode)"
