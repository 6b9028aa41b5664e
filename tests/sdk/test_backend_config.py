"""Typed backend configs: ``Client(LocalBackendConfig(...))`` equals ``Client("local", ...)``; bad input names itself."""

from __future__ import annotations

import pytest

import rarl
from rarl import Client, InvalidArgument, KubernetesBackendConfig, LocalBackendConfig


def test_typed_config_and_string_form_build_the_same_backend(tmp_path):
    typed = Client(LocalBackendConfig(home=tmp_path / "h"))
    named = Client("local", home=tmp_path / "h")
    assert typed.backend.home == named.backend.home == (tmp_path / "h").resolve()


@pytest.mark.parametrize(("args", "kwargs", "words"), [
    (("bogus",), {}, "backend: unknown backend 'bogus'"),
    (("local",), {"bogus": 1}, "unknown option(s) bogus"),
    (("kubernetes",), {"home": "x"}, "unknown option(s) home"),
    ((LocalBackendConfig(),), {"home": "x"}, "put them in the config"),
    ((42,), {}, "backend: expected"),
])
def test_bad_arguments_are_one_typed_error_that_names_them(args, kwargs, words):
    with pytest.raises(InvalidArgument) as info:
        Client(*args, **kwargs)
    assert words in str(info.value)
    assert isinstance(info.value, rarl.errors.RARLError) and isinstance(info.value, ValueError)


def test_configs_check_their_types_when_built():
    with pytest.raises(InvalidArgument, match="namespace: expected a string, got int"):
        KubernetesBackendConfig(namespace=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="home: expected a path"):
        LocalBackendConfig(home=3)  # type: ignore[arg-type]


def test_the_public_names_are_listed():
    assert {"Client", "LocalBackendConfig", "KubernetesBackendConfig", "InvalidArgument"} <= set(dir(rarl))
