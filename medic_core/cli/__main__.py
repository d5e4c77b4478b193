"""``python -m medic_core.cli``: the ``medic`` command without the console script."""

from medic_core.cli import main

main()
