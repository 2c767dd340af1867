import pytest
import torch

from dldna_lite import config


def test_profiles(monkeypatch):
    monkeypatch.setenv("DLDNA_PROFILE", "quick")
    assert config.profile() == "quick"
    monkeypatch.delenv("DLDNA_PROFILE")
    assert config.profile() == "cpu"
    monkeypatch.setenv("DLDNA_PROFILE", "laptop")
    with pytest.raises(ValueError, match="quick, cpu, gpu"):
        config.profile()


def test_every_section_defines_every_profile_with_the_same_keys():
    for section, by_profile in config.SIZES.items():
        assert set(by_profile) == set(config.PROFILES), section
        keys = {p: set(v) for p, v in by_profile.items()}
        assert len({frozenset(k) for k in keys.values()}) == 1, f"{section}: keys differ across profiles {keys}"


def test_sizes_bad_names():
    with pytest.raises(ValueError, match="quickstart"):
        config.sizes("nope")
    with pytest.raises(ValueError, match="quick, cpu, gpu"):
        config.sizes("quickstart", "tpu")
    assert config.sizes("quickstart", "quick")["epochs"] >= 1


def test_seed_everything_is_reproducible():
    config.seed_everything(3)
    a = torch.randn(5)
    config.seed_everything(3)
    assert torch.equal(a, torch.randn(5))
    with pytest.raises(ValueError):
        config.seed_everything(-1)
