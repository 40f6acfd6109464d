"""`--config.KEY=VALUE` command-line overrides: the text parsed by the field's current type."""

from __future__ import annotations

import ast
import difflib

import ml_collections

from hrnet_jax.errors import ConfigError


def apply(config: ml_collections.ConfigDict, dotted: str, text: str | None) -> None:
    """Sets `dotted` (e.g. "train.learning_rate") from command-line text, parsed by the field's type."""
    node, parts = config, dotted.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            raise ConfigError(f"unknown config key {dotted!r}{suggestion(dotted, config)}")
        if i < len(parts) - 1:
            node = node[part]
    current = node[parts[-1]]
    if isinstance(current, ml_collections.ConfigDict):
        fields = ", ".join(current.keys())
        raise ConfigError(f"config key {dotted!r} is a section; set one of its fields ({fields})")
    value = _parse_value(dotted, text, current)
    try:
        node[parts[-1]] = value
    except TypeError as e:
        raise ConfigError(f"--config.{dotted}={text}: {e}") from None


def _parse_value(name: str, text: str | None, current):
    if text is None:
        if isinstance(current, bool):
            return True
        raise ConfigError(f"--config.{name} needs a value: --config.{name}=VALUE")
    expected = None
    if isinstance(current, bool):
        words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        if text.lower() in words:
            return words[text.lower()]
        expected = "true or false"
    elif isinstance(current, int):
        try:
            return int(text)
        except ValueError:
            expected = "an integer"
    elif isinstance(current, float):
        try:
            return float(text)
        except ValueError:
            expected = "a number"
    elif isinstance(current, str):
        return text
    else:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text if current is None else None
        if isinstance(current, tuple | list):
            if isinstance(value, tuple | list):
                return tuples(list(value))
            expected = "a tuple such as '({})'".format(",".join(map(str, current)))
        else:
            return value
    raise ConfigError(f"--config.{name}={text}: expected {expected}")


def tuples(value):
    """Lists (JSON, literals) as the nested tuples a config's tuple fields hold."""
    return tuple(tuples(v) for v in value) if isinstance(value, list | tuple) else value


def dotted_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in config.items():
        keys.append(f"{prefix}{key}")
        if isinstance(value, ml_collections.ConfigDict):
            keys += dotted_keys(value, f"{prefix}{key}.")
    return keys


def suggestion(name: str, schema: ml_collections.ConfigDict) -> str:
    """ "; did you mean 'KEY'?" for the schema's key closest to a mistyped `name`, or ""."""
    close = difflib.get_close_matches(name, dotted_keys(schema), n=1, cutoff=0.8)
    return f"; did you mean {close[0]!r}?" if close else ""
