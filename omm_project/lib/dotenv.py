"""
The one rule for a local `.env` file: the environment wins over it.

settings.py loads `.env` through `dotenv_load`; scripts/serve.sh runs this module
(`python -m omm_project.lib.dotenv .env`) to export the same values into its own shell before it
migrates, bootstraps and starts the Procfile, so every step sees what Django sees.
The parser is django-environ's (`read_env` with overwrite=False: a variable already set is kept).
"""

import os
import shlex
import sys
from pathlib import Path

import environ


def dotenv_load(path: Path | str) -> dict[str, str]:
    """Set the variables of `path` that the environment does not set; returns those it set."""
    before = set(os.environ)
    environ.Env.read_env(str(path), overwrite=False)
    return {key: os.environ[key] for key in os.environ if key not in before}


def main(argv: list[str]) -> int:
    """Print shell `export` lines for the .env values that the environment does not set."""
    if len(argv) != 2:
        print("usage: python -m omm_project.lib.dotenv PATH", file=sys.stderr)
        return 2
    for key, value in sorted(dotenv_load(argv[1]).items()):
        print(f"export {key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
