"""The README stays true: its configuration table lists every variable the settings read."""

from __future__ import annotations

import re
from pathlib import Path

from colima_ref.settings import ENVIRONMENT

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_documents_every_environment_variable_and_no_other() -> None:
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", README.read_text(), flags=re.MULTILINE))
    assert documented == {variable.name for variable in ENVIRONMENT}


def test_readme_opens_with_the_two_set_up_commands() -> None:
    text = README.read_text()
    assert text.index("make run") < text.index("## ")
    assert text.index("make test") < text.index("## ")
