"""Load and check a workflow config: YAML without silent duplicate keys, then the JSON schema.

The schema (``vislaw/schema/config.schema.yaml``) is the single description of what a config may
hold; the Snakefile and every library entry point go through :func:`check_config`, so a bad file
fails before any job starts, with a message that names the offending key.
"""

from __future__ import annotations

import copy
import math
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).parent / "schema" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config problem, with the dotted path of the key at fault in the message."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"config key '{key}': {message}")


class ConfigFileMissing(ConfigError, FileNotFoundError):
    """The config file itself is not there: a ConfigError (CLIs report it as one, exit 2) that
    callers catching FileNotFoundError still catch."""


# What a config's YAML may expand to. A config is a few hundred values a few levels deep; an
# alias bomb (nine aliases of nine aliases ...) is a few lines that expand to 10**8 values, which
# every later walk (the schema check, deepcopy) then visits one by one: > 150 s, not an error.
MAX_YAML_VALUES = 100_000
MAX_YAML_DEPTH = 64


YTE_REFUSED = (
    "configs processed by yte can run arbitrary Python and are refused; write the values out "
    "(see docs/refuses.md)"
)


# libyaml's parser when PyYAML was built with it: ~10x faster than the pure-Python one, which
# matters because every job parses the schema (0.8 s of a 2 s warm job, docs/performance.md).
_SafeLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeLoader):
    """SafeLoader that refuses duplicate mapping keys instead of keeping the last one.

    A duplicated encoder name would otherwise silently replace the first entry.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(str(key), f"duplicate key (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML (or JSON) config file, refusing duplicate keys at any depth; errors name
    the file, the dotted key and the line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigFileMissing("<root>", f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        try:
            node = yaml.compose(text, Loader=_SafeLoader)
        except RecursionError:
            raise ConfigError(
                "<root>", f"{path} is nested too deeply to parse (limit {MAX_YAML_DEPTH} levels)"
            ) from None
        check_yaml_size(node, path)
        _refuse_duplicates(node, "", path, set())
        # Construct from the composed tree: parsing the text a second time was half the cost.
        loader = _UniqueKeyLoader("")
        try:
            return None if node is None else loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as error:
        raise ConfigError("<root>", f"{path} is not valid YAML: {error}") from None


def check_yaml_size(node: yaml.Node | None, source: Any, key: str = "<root>") -> None:
    """Refuse a composed YAML tree that aliases expand past MAX_YAML_VALUES values or that
    nests deeper than MAX_YAML_DEPTH, naming the key where the limit was crossed.

    Counted on the composed tree, where an alias is one shared node, with each node's count and
    height memoised: linear in the file, so a bomb is refused in milliseconds. A recursive alias
    (``&a [*a]``) is infinitely deep and is refused by the depth limit.
    """
    if node is not None:
        _values_below(node, key, 0, {}, source)


def _values_below(
    node: yaml.Node, key: str, depth: int, memo: dict[int, tuple[int, int]], source: Any
) -> tuple[int, int]:
    """(values, height) of ``node`` expanded; raises ConfigError past either limit."""
    if id(node) in memo:
        count, height = memo[id(node)]
    else:
        if depth > MAX_YAML_DEPTH:
            raise ConfigError(key, f"{source} nests deeper than {MAX_YAML_DEPTH} levels")
        if isinstance(node, yaml.MappingNode):
            children = [
                (f"{key}.{k.value}" if key != "<root>" else str(k.value), v) for k, v in node.value
            ]
        elif isinstance(node, yaml.SequenceNode):
            children = [
                (f"{key}.{i}" if key != "<root>" else str(i), v) for i, v in enumerate(node.value)
            ]
        else:
            children = []
        count, height = 1, 0
        for sub_key, child in children:
            sub_count, sub_height = _values_below(child, sub_key, depth + 1, memo, source)
            count, height = count + sub_count, max(height, sub_height + 1)
            if count > MAX_YAML_VALUES:
                raise ConfigError(
                    key,
                    f"{source}: YAML aliases expand this to more than {MAX_YAML_VALUES} values "
                    "(an alias bomb?); write the values out",
                )
        memo[id(node)] = (count, height)
    if depth + height > MAX_YAML_DEPTH:
        raise ConfigError(key, f"{source} nests deeper than {MAX_YAML_DEPTH} levels")
    return count, height


def _refuse_duplicates(node: yaml.Node | None, prefix: str, source: Any, seen: set[int]) -> None:
    """Walk a composed YAML node tree; a mapping key given twice is a ConfigError naming its
    dotted path (``encoders.sd15``), the source and both lines. Snakemake's own loader keeps
    the last entry silently."""
    if node is None or id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            dotted = f"{prefix}.{key}" if prefix else key
            line = key_node.start_mark.line + 1
            if key in first and key != "<<":
                raise ConfigError(
                    dotted, f"duplicate key in {source} (lines {first[key]} and {line})"
                )
            first[key] = line
            _refuse_duplicates(value_node, dotted, source, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicates(item, f"{prefix}.{i}" if prefix else str(i), source, seen)


def refuse_yte(path: str | Path) -> None:
    """Refuse a config file that asks Snakemake to run it through yte (``__use_yte__``): yte
    evaluates Python expressions, so such a file is a program, not settings. Read as text:
    a yte template need not be plain YAML."""
    path = Path(path)
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    if re.search(r"^[\"']?__use_yte__[\"']?\s*:", text, re.MULTILINE) or re.search(
        r"[{,]\s*[\"']?__use_yte__[\"']?\s*:", text
    ):
        raise ConfigError("__use_yte__", f"{path}: {YTE_REFUSED}")


def check_config_files(paths: Sequence[str | Path]) -> None:
    """Re-read the config files Snakemake was given with our loader: Snakemake parsed them
    already, keeping the last of duplicate keys; this refuses duplicates and yte files."""
    for path in paths:
        refuse_yte(path)
        read_yaml(path)


def cli_config_entries(argv: Sequence[str]) -> list[str]:
    """The ``key=value`` entries after ``--config``/``-C`` on a snakemake command line."""
    entries: list[str] = []
    taking = False
    for arg in argv[1:]:
        if arg in ("--config", "-C"):
            taking = True
        elif arg.startswith("--config="):
            taking = True
            entries.append(arg.split("=", 1)[1])
        elif arg.startswith("-") and not arg[1:2].isdigit():
            taking = False
        elif taking:
            entries.append(arg)
    return entries


def check_cli_config(argv: Sequence[str]) -> None:
    """``--config`` overrides: a key given twice (``seed=1 seed=2``) or a duplicate key inside
    a mapping value is refused, as in a file (Snakemake keeps the last)."""
    seen: set[str] = set()
    for entry in cli_config_entries(argv):
        key, _, value = entry.partition("=")
        if key in seen:
            raise ConfigError(key, "given twice on --config")
        seen.add(key)
        try:
            node = yaml.compose(value, Loader=yaml.BaseLoader)
        except (yaml.YAMLError, RecursionError):
            continue  # Snakemake then takes it as a plain string
        check_yaml_size(node, "--config", key)
        _refuse_duplicates(node, key, "--config", set())


def rule_names_in(folder: str | Path) -> list[str]:
    """Names of the rules defined in a workflow's ``*.smk`` files, active or not."""
    names: list[str] = []
    for path in sorted(Path(folder).glob("*.smk")):
        names += re.findall(r"^\s*(?:local)?rule\s+(\w+)\s*:", path.read_text(), re.MULTILINE)
    return names


def check_rule_names(config: Mapping[str, Any], rules: Sequence[str]) -> None:
    """``resources:`` keys are rule names of this workflow (or ``default``): a typo would
    otherwise be ignored and the rule would run with the defaults."""
    known = set(rules) | {"default"}
    for name in config.get("resources", {}) or {}:
        if name not in known:
            raise ConfigError(
                f"resources.{name}",
                f"no rule named {name!r}; rules: {', '.join(sorted(known))}",
            )


@cache
def schema() -> dict:
    return read_yaml(SCHEMA_PATH)


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "<root>"


def _describe(error: jsonschema.ValidationError) -> str:
    """Turn the deepest useful jsonschema error into one readable sentence."""
    if error.validator == "additionalProperties":
        return f"unknown key(s): {error.message.split('(')[-1].rstrip(')')}"
    if error.validator == "enum":
        return f"{error.instance!r} is not one of {error.validator_value}"
    if error.validator == "not":
        return "holds keys that cannot go together here (see the README's config section)"
    if error.validator == "type" and isinstance(error.instance, str) and _numeric(error.instance):
        return (
            f"{error.message} (Snakemake's --config hands numbers inside a mapping over as "
            "strings: set it in an overlay file, --configfile config.yaml overlay.yaml; README)"
        )
    return error.message


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _fill_defaults(instance: Any, node: dict, root: dict) -> None:
    """Set schema defaults in place, recursing through properties and additionalProperties."""
    if "$ref" in node:
        node = root["$defs"][node["$ref"].split("/")[-1]]
    if not isinstance(instance, dict):
        return
    for key, sub in node.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(instance[key], sub, root)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in node.get("properties", {}):
                _fill_defaults(value, extra, root)


# A name that becomes one path component (run, encoder, category ...): starts with a letter,
# digit or underscore, so '.', '..', '-x' and hidden names are out; no '/' or '\\' anywhere.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_MAX_NAME = 128


def safe_name(key: str, value: Any) -> str:
    """``value`` if it can be used as one path component, else a ConfigError naming ``key``.

    Why: an encoder named ``..`` made its stage-2 folder the run's LLM folder, and Snakemake's
    clean-up of the failed job then deleted it. Names never hold a separator, never start with a
    dot or a dash (options, hidden files) and never are ``.``/``..``.
    """
    if not isinstance(value, str) or not _NAME.fullmatch(value) or len(value) > _MAX_NAME:
        raise ConfigError(
            key,
            f"{value!r} cannot name a file or folder: use letters, digits and _ . + - "
            f"(not first: . or - or +), at most {_MAX_NAME} characters",
        )
    return value


def _named_components(config: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(key, value) of every config string that becomes a path component somewhere."""
    yield "run", config.get("run")
    for name, entry in _mapping(config.get("encoders")).items():
        yield "encoders", name
        for i, member in enumerate(_mapping(entry).get("members") or []):
            yield f"encoders.{name}.members.{i}", member
    for i, bench in enumerate(_sequence(config.get("benchmarks"))):
        yield f"benchmarks.{i}", bench
    synthetic = _mapping(_mapping(config.get("data")).get("synthetic"))
    for i, category in enumerate(_sequence(synthetic.get("spair_categories"))):
        yield f"data.synthetic.spair_categories.{i}", category
    train = _mapping(config.get("train"))
    for name in _mapping(train.get("recipes")):
        yield "train.recipes", name
    lmvr = _mapping(config.get("lmvr"))
    for i, name in enumerate(_sequence(lmvr.get("encoders"))):
        yield f"lmvr.encoders.{i}", name
    references = _mapping(_mapping(config.get("a_score")).get("references"))
    for suffix, name in references.items():
        yield "a_score.references", suffix
        yield f"a_score.references.{suffix}", name
    tasks = _mapping(_mapping(config.get("eval")).get("tasks"))
    for bench, task in tasks.items():
        yield "eval.tasks", bench
        yield f"eval.tasks.{bench}", task


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _sequence(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def check_names(config: Mapping[str, Any]) -> None:
    """Every config string that becomes a path component is a safe single component."""
    for key, value in _named_components(config):
        if value is not None:  # a missing value is the schema's to report
            safe_name(key, value)


def check_finite(node: Any, key: str = "<root>") -> None:
    """No number anywhere in the config is inf or nan (YAML's ``.inf``/``.nan`` pass the
    schema's bounds: ``lr: .inf`` satisfies exclusiveMinimum 0)."""
    if isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(key, f"{node!r} is not a finite number")
    if isinstance(node, Mapping):
        for sub, value in node.items():
            check_finite(value, str(sub) if key == "<root>" else f"{key}.{sub}")
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            check_finite(value, f"{key}.{i}")


def check_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate against the schema and return a deep copy with defaults filled in."""
    if not isinstance(config, Mapping):
        raise ConfigError("<root>", "the config must be a mapping")
    config = copy.deepcopy(dict(config))
    if "__use_yte__" in config:
        raise ConfigError("__use_yte__", YTE_REFUSED)
    check_finite(config)
    check_names(config)
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: (-len(e.absolute_path), e.path))
    if errors:
        best = jsonschema.exceptions.best_match(errors) or errors[0]
        raise ConfigError(_key_path(best), _describe(best))
    _fill_defaults(config, schema(), schema())
    return config


def schema_node(dotted: str) -> dict[str, Any]:
    """The schema node of config key ``dotted`` (``""``: the root), a local ``$ref`` followed."""
    root = schema()
    node: dict[str, Any] = root
    for part in dotted.split(".") if dotted else []:
        node = node.get("properties", {}).get(part)
        if node is None:
            raise ConfigError(dotted, "not a key of the config schema")
        if "$ref" in node:
            node = root["$defs"][node["$ref"].split("/")[-1]]
    return node


def _plain(value: Any) -> Any:
    """A copy made of JSON types (tuples back to lists, mappings to dicts), for the validator."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def check_section(dotted: str, values: Any) -> Any:
    """The value of one config key (a section such as ``data.synthetic``, or a scalar such as
    ``seed``) checked against its schema node, defaults filled in, for a caller that has no
    whole config. Errors name the dotted key."""
    node = schema_node(dotted)
    values = _plain(values)
    validator = jsonschema.Draft202012Validator({**node, "$defs": schema().get("$defs", {})})
    errors = sorted(validator.iter_errors(values), key=lambda e: (-len(e.absolute_path), e.path))
    if errors:
        best = jsonschema.exceptions.best_match(errors) or errors[0]
        path = _key_path(best)
        key = dotted if path == "<root>" else f"{dotted}.{path}"
        if best.validator == "additionalProperties" and isinstance(best.instance, Mapping):
            known = best.schema.get("properties", {})
            unknown = sorted(k for k in best.instance if k not in known)
            raise ConfigError(f"{key}.{unknown[0]}", f"unknown key (known: {sorted(known)})")
        raise ConfigError(key, _describe(best))
    _fill_defaults(values, node, schema())
    return values


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read, merge top-level overrides, and check a config file."""
    data = read_yaml(path)
    if data is None:
        raise ConfigError("<root>", f"{path} is empty")
    if overrides:
        data = {**data, **overrides}
    return check_config(data)


def run_cli(main: Callable[[], int | None]) -> int:
    """Run a ``python -m vislaw.*`` entry point; a bad config is one line on stderr
    (``config key 'seed': ...``) and exit code 2, not a traceback (argparse's own usage
    errors exit 2 too). Other errors keep their traceback: they are bugs or data faults
    whose stack helps."""
    try:
        return main() or 0
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2


def write_run_config(config: Mapping[str, Any], path: str | Path) -> None:
    """The checked config as YAML that load_config reads back unchanged (paths as strings), for
    the processes a job starts (torchrun ranks, per-GPU processes).

    YAML, not JSON: load_config reads YAML, and YAML 1.1 reads JSON's "2e-05" as a string, so a
    JSON copy of a config with lr 2e-5 failed its own check in every torchrun rank."""
    import json

    from vislaw.io.atomic import write_text_atomic

    plain = json.loads(json.dumps(dict(config), default=str))
    write_text_atomic(Path(path), yaml.safe_dump(plain, sort_keys=False))
