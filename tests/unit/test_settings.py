from __future__ import annotations

from pinsync.settings import Settings


def test_defaults_are_the_documented_ones() -> None:
    settings = Settings.from_env({})
    assert settings.ipfs_api_url == "http://127.0.0.1:5001"
    assert settings.mark_dirty_on_startup is False
    assert settings.namespaces == ()


def test_environment_overrides_defaults() -> None:
    env = {"PINSYNC_MARK_DIRTY_ON_STARTUP": "true", "PINSYNC_NAMESPACES": "a,b"}
    settings = Settings.from_env(env)
    assert settings.mark_dirty_on_startup is True
    assert settings.namespaces == ("a", "b")
