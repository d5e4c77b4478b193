"""Run in a child of the warm fork server (``support.warm``): become ``medic serve``.

``runpy.run_path`` runs this in the forked child with the globals ``WARM_SERVE`` (working
directory, stdout and stderr files) and ``WARM_SERVE_ENV`` (the environment) set. It sets up
what ``subprocess.Popen(["medic", "serve"], start_new_session=True, ...)`` would, then calls the
``medic`` console script's entry point.
"""

import os
import sys
from importlib.metadata import entry_points

serve: dict[str, str] = globals()["WARM_SERVE"]
env: dict[str, str] = globals()["WARM_SERVE_ENV"]

os.setsid()
os.chdir(serve["cwd"])
os.environ.clear()
os.environ.update(env)
for fd, path, flags in (
    (0, os.devnull, os.O_RDONLY),
    (1, serve["stdout"], os.O_WRONLY | os.O_APPEND),
    (2, serve["stderr"], os.O_WRONLY | os.O_APPEND),
):
    opened = os.open(path, flags)
    os.dup2(opened, fd)
    os.close(opened)
sys.argv = ["medic", "serve"]
(medic,) = entry_points(group="console_scripts", name="medic")
medic.load()(["serve"])
