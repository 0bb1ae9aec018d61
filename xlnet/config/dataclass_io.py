"""Typed, validated dataclasses from plain mappings (YAML/JSON), with errors that name the key."""

import dataclasses
import difflib
import typing

from xlnet.errors import UserError


def _coerce(value, annotation, key):
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, options[0], key)
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise UserError(f"{key}: {value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise UserError(f"{key}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise UserError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise UserError(f"{key}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, bool):
            raise UserError(f"{key}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise UserError(f"{key}: expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise UserError(f"{key}: expected a string, got {value!r}")
    return value


def option(default, help_text):
    """A config field with the help text that the README's configuration reference shows."""
    return dataclasses.field(default=default, metadata={"help": help_text})


def from_mapping(cls, mapping, section="", exclude=()):
    """Builds dataclass `cls` from `mapping`; unknown keys and ill-typed values raise UserError.

    `section` prefixes key names in messages ("train.steps"); `exclude` names fields that the
    mapping must not set (they are filled in by the caller).
    """
    prefix = f"{section}." if section else ""
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise UserError(f"{section or 'config'}: expected a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init} - set(exclude)
    unknown = sorted(set(mapping) - names, key=str)
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), sorted(names), n=1)
        hint = f"did you mean {prefix}{close[0]}? " if close else ""
        raise UserError(
            f"{prefix}{unknown[0]}: unknown key ({hint}known: {', '.join(sorted(names))})")
    values = {k: _coerce(v, hints[k], prefix + k) for k, v in mapping.items()}
    return values


def field_help(cls):
    """[(name, type, default, help)] for a config dataclass, in declaration order."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        annotation = hints[f.name]
        if typing.get_origin(annotation) is typing.Literal:
            type_name = " / ".join(str(a) for a in typing.get_args(annotation))
        else:
            type_name = getattr(annotation, "__name__", str(annotation))
        rows.append((f.name, type_name, default, f.metadata.get("help", "")))
    return rows
