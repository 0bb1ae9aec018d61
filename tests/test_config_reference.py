import os

from xlnet.config.config_reference import with_reference

README = os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md")


def test_readme_configuration_reference_is_current():
    with open(README) as f:
        text = f.read()
    assert with_reference(text) == text, (
        "README's configuration reference is stale: run "
        "`.venv/bin/python -m xlnet.config.config_reference README.md`")
