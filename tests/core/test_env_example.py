"""
Settings in one place: every OMM_* variable settings.py reads is listed in .env.example with the
default settings.py gives it, and every OMM_* variable .env.example lists is read by settings.py
or by the process files that start omm (Procfile, the Docker entrypoint, gunicorn.conf.py).
"""

import ast
import re
from pathlib import Path

import environ

ROOT = Path(__file__).resolve().parents[2]
PROCESS_FILES = ("Procfile", "scripts/docker-entrypoint.sh", "scripts/serve.sh", "gunicorn.conf.py")
CASTS = {"int": int, "float": float, "bool": bool, "list": list}


def _settings_defaults() -> dict[str, tuple[str, object]]:
    """{name: (env method, default)} of every env.<method>("OMM_X", default=<constant expression>)."""
    found = {}
    for node in ast.walk(ast.parse((ROOT / "omm_project/settings.py").read_text())):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "env"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and str(node.args[0].value).startswith("OMM_")
        ):
            continue
        default = next((k.value for k in node.keywords if k.arg == "default"), None)
        value = eval(compile(ast.Expression(default), "settings.py", "eval"), {"__builtins__": {}}) if default else None
        found[node.args[0].value] = (node.func.attr, value)
    return found


def _example_values() -> dict[str, str]:
    text = (ROOT / ".env.example").read_text()
    return dict(re.findall(r"^#? ?(OMM_[A-Z0-9_]+)=(.*)$", text, re.M))


def test_every_omm_setting_is_in_env_example():
    missing = set(_settings_defaults()) - set(_example_values())
    assert not missing, f"read by settings.py, absent from .env.example: {sorted(missing)}"


def test_every_omm_variable_in_env_example_is_read():
    processes = "\n".join((ROOT / path).read_text() for path in PROCESS_FILES)
    unread = {name for name in set(_example_values()) - set(_settings_defaults()) if name not in processes}
    assert not unread, f"listed in .env.example, read nowhere: {sorted(unread)}"


def test_env_example_gives_the_defaults_of_settings_py():
    example = _example_values()
    differ = {}
    for name, (method, default) in _settings_defaults().items():
        if default == "" and method == "str":
            continue  # an empty default that settings.py replaces itself (`or <default>`, commented there)
        value = environ.Env.parse_value(example[name], CASTS[method]) if method in CASTS else example[name]
        if name.endswith("_DIR"):
            value, default = Path(value), Path(default)
        if value != default:
            differ[name] = (example[name], default)
    assert not differ, f".env.example disagrees with settings.py's defaults: {differ}"
