"""server/medic.example.toml is generated from ``medic_core.settings.Settings`` so it documents
every setting and nothing else. Regenerate it after adding a setting (from tests/infra):

    ../../.venv/bin/python -m infracheck.example_config > ../../server/medic.example.toml
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import MISSING, fields
from typing import Any

from medic_core.settings import Settings

# Values that differ from the code's default in the example, with why.
EXAMPLE_VALUES: dict[str, Any] = {
    # The per-user default (~/.local/share/medic) means nothing in a container.
    "data_dir": "/var/lib/medic",
}

HEADER = """\
# Medic configuration: every setting, with its default value.
#
# Point MEDIC_CONFIG_FILE at a copy of this file; keys are the MEDIC_* environment variables
# without the prefix, in lower case, and an environment variable wins over the file. Keep
# secrets (database password, admin_key, tokens, smtp_password) out of files you commit: set
# them through the environment (Kubernetes: the ExternalSecret of the Helm chart).
#
# Generated from medic_core/settings.py (tests/infra/infracheck/example_config.py); a test
# fails when a setting is missing here or a key here is not a setting. See docs/configuration.md.
"""


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string


def render() -> str:
    parts = [HEADER]
    for f in fields(Settings):
        default = f.default if f.default is not MISSING else None
        value = EXAMPLE_VALUES.get(f.name, default)
        help_lines = textwrap.wrap(f.metadata["help"], width=94)
        comment = "\n".join(f"# {line}" for line in help_lines)
        parts.append(
            f"\n{comment}\n# env: MEDIC_{f.name.upper()}\n{f.name} = {toml_value(value)}\n"
        )
    return "".join(parts)


if __name__ == "__main__":
    print(render(), end="")
