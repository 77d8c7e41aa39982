"""The README's reference tables say what the code does: every config key with its default
and choices, and every exit code with its meaning."""

import dataclasses
import re
import typing
from pathlib import Path

from sft.config import Config
from sft.errors import EXIT_CODES, SftError

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def table_after(marker: str) -> list[list[str]]:
    """The cells of the first table from `marker` (a heading, or the table's header row) on,
    header and rule left out."""
    section = README[README.index(marker):]
    rows = []
    for line in section.splitlines():
        if rows and not line.startswith("|"):
            break
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[2:]


def leaves(cls, prefix=""):
    """(key path, default, choices) of every leaf of the config tree."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from leaves(hints[f.name], f"{prefix}{f.name}.")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        literal = typing.get_origin(hints[f.name]) is typing.Literal
        yield f"{prefix}{f.name}", default, typing.get_args(hints[f.name]) if literal else ()


def render(value) -> str:
    """A default as the README writes it, in YAML's words."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return {list: "[]", dict: "{}"}.get(type(value), str(value))


def documented_keys() -> dict[str, tuple[str, str]]:
    """Key path -> (default cell, meaning cell); a row may name siblings after the first full path."""
    documented = {}
    for key_cell, default_cell, meaning in table_after("## Configuration"):
        first, *siblings = re.findall(r"`([^`]+)`", key_cell)
        parent = first.rpartition(".")[0]
        for key in [first, *(f"{parent}.{s}" for s in siblings)]:
            assert key not in documented, f"{key} documented twice"
            documented[key] = (default_cell, meaning)
    return documented


def test_every_config_key_is_documented_with_its_default_and_choices():
    documented = documented_keys()
    keys = list(leaves(Config))
    assert set(documented) == {key for key, _, _ in keys}
    for key, default, choices in keys:
        default_cell, meaning = documented[key]
        assert default_cell == f"`{render(default)}`", key
        for choice in choices:
            assert f"`{choice}`" in meaning, f"{key}: choice {choice} not described"


def test_every_exit_code_is_documented_as_the_code_defines_it():
    rows = table_after("## Exit codes")
    assert {int(code): meaning for code, meaning in rows} == EXIT_CODES


def test_every_error_class_has_a_documented_exit_code():
    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    assert {cls.exit_code for cls in subclasses(SftError)} <= set(EXIT_CODES)


def test_the_readme_stays_a_manual():
    assert len(README.splitlines()) <= 350


def test_the_table_for_other_trainers_names_real_keys():
    keys = {key for key, _, _ in leaves(Config)}
    named = [re.findall(r"`([^`]+)`", row[0])[0] for row in table_after("Coming from other trainers:")]
    assert len(named) > 10 and set(named) <= keys


def test_what_survives_what_names_tests_that_exist():
    tests = Path(__file__).parent
    rows = table_after("| what happens | what survives | proved by |")
    assert len(rows) >= 6
    for row in rows:
        references = re.findall(r"`([^`]+)`", row[-1])
        assert references, row
        for reference in references:
            module, _, name = reference.partition("::")
            assert re.fullmatch(r"test_\w+\.py", module) and re.fullmatch(r"test_\w+", name), reference
            assert re.search(rf"^def {name}\(", (tests / module).read_text(), re.MULTILINE), reference
