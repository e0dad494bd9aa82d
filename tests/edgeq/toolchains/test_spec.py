"""Toolchain environments: ready only as installed from today's pins, a failed install leaves nothing half-made."""

import subprocess
import sys

import pytest

from edgeq.errors import EdgeqError
from edgeq.toolchains import ToolchainSpec, install_toolchain


@pytest.fixture
def spec(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEQ_CACHE", str(tmp_path / "cache"))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# standard library only\n")
    return ToolchainSpec(name="toy-chain", description="test", python=sys.executable, requirements=requirements,
                         probe="import json")


def test_installed_environment_is_ready_until_its_pins_change(spec):
    assert spec.not_ready() == "the toy-chain toolchain environment" and spec.env_var == "EDGEQ_TOY_CHAIN_PYTHON"
    python = install_toolchain(spec, log=lambda m: None)
    assert spec.not_ready() is None and python == spec.python_path()
    assert subprocess.run([str(python), "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True,
                          check=True).stdout.strip() == str(spec.folder)
    spec.requirements.write_text("# standard library only\nsome-pin==1.0\n")
    assert "pinned requirements changed" in spec.not_ready()


def test_a_failed_install_names_its_log_and_keeps_nothing(spec, tmp_path):
    spec.requirements.write_text(f"{tmp_path / 'no-such-wheel.whl'}\n")
    with pytest.raises(EdgeqError) as err:
        install_toolchain(spec, log=lambda m: None)
    assert "install its requirements" in err.value.one_line() and "toy-chain-install.log" in err.value.one_line()
    assert not spec.folder.exists() and not list(spec.folder.parent.glob(".toy-chain.installing-*"))


def test_an_interpreter_of_the_wrong_version_is_refused(spec):
    with pytest.raises(EdgeqError, match="has wheels for Python 2.7"):
        install_toolchain(spec.model_copy(update={"python_versions": ("2.7",)}), log=lambda m: None)
