"""pyproject.toml as the build tools of the coming months read it: the README's install commands keep working."""
import re
import tomllib
from pathlib import Path

PYPROJECT = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())


def test_license_is_an_spdx_string_and_the_build_asks_for_a_setuptools_that_reads_it():
    """setuptools deprecated ``license = {text = ...}`` (a TOML table) and stops building projects that use it
    on 2027-02-18; the SPDX string it wants needs setuptools >= 77."""
    assert isinstance(PYPROJECT["project"]["license"], str) and PYPROJECT["project"]["license"] == "Apache-2.0"
    (setuptools,) = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    floor = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", setuptools)
    assert floor and int(floor.group(1)) >= 77, setuptools
