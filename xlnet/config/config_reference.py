"""The README's configuration reference, generated from the config dataclasses.

`python -m xlnet.config.config_reference README.md` rewrites the block between the markers; a
test fails when the README is out of date.
"""

import sys

from xlnet.config.model_config import XLNetConfig
from xlnet.config.data_config import DataConfig
from xlnet.config.dataclass_io import field_help
from xlnet.config.run_config import MODEL_FIELDS_FROM_DATA
from xlnet.config.train_config import TrainConfig

START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"


def reference_markdown():
    lines = []
    for section, cls in (("model", XLNetConfig), ("data", DataConfig), ("train", TrainConfig)):
        lines += [f"**`{section}`**", "", "| key | type | default | meaning |",
                  "|---|---|---|---|"]
        for name, type_name, default, help_text in field_help(cls):
            if section == "model" and name in MODEL_FIELDS_FROM_DATA:
                continue
            lines.append(f"| `{name}` | {type_name} | `{default}` | {help_text} |")
        lines.append("")
    return "\n".join(lines)


def with_reference(readme_text):
    head, start, rest = readme_text.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"README has no {START} ... {END} block")
    return f"{head}{START}\n{reference_markdown()}\n{END}{tail}"


def main(argv=None):
    path = (argv or sys.argv[1:] or ["README.md"])[0]
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(with_reference(text))


if __name__ == "__main__":
    main()
