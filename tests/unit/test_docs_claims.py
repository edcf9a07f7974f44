"""The docs name only what exists: make targets, `isthmus` commands and options, `python -m` modules,
repository paths, `ISTHMUS_*` environment variables and the README's settings keys.

Cheap guards against docs drifting from the code: each check reads the docs' code (fenced blocks and
inline code spans) and asks the code itself — the Makefile, the `isthmus` console script, the settings
classes — whether the thing named is real. A failure names the file, the text and what is missing.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from isthmus_cli.modules import MODULES
from isthmus_core.settings import CommonSettings, SectionSettings
from isthmus_operator.settings import OperatorSettings

ROOT = Path(__file__).resolve().parents[2]
DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "terraform" / "README.md",
    ROOT / "tests" / "infra" / "README.md",
]
#: prose that shows commands but is not markdown
COMMAND_TEXTS = [ROOT / "charts" / "isthmus" / "templates" / "NOTES.txt"]
#: where the image, the chart, the operator and terraform set or name environment variables
ENV_SOURCES = [
    ROOT / "Dockerfile",
    ROOT / "skaffold.yaml",
    *(p for p in (ROOT / "charts").rglob("*") if p.suffix in {".yaml", ".tpl", ".txt", ".json"}),
    *(ROOT / "operators").rglob("*.py"),
    *(ROOT / "terraform").rglob("*.tf"),
]
#: ISTHMUS_* variables read outside the settings classes and the CLI options: name -> a file reading it
OTHER_READERS = {
    "ISTHMUS_TOOLS_CACHE": "tools/tools.d/helm.sh",
    "ISTHMUS_TEST_KUBECONFIG": "tests/operator/conftest.py",
    "ISTHMUS_TEST_KAFKA_BOOTSTRAP": "conftest.py",
    "ISTHMUS_TEST_REGIONS": "conftest.py",
    "ISTHMUS_TEST_HYDRA_DIR": "conftest.py",
    "ISTHMUS_CHROMIUM": "services/core/isthmus_core/testing/browser.py",
    "ISTHMUS_SHARED_DATASETS": "services/core/isthmus_core/testing/infra.py",
    "ISTHMUS_FUZZ_EXAMPLES": "tests/e2e/test_e2e_fuzz.py",
}
ENV_VAR = re.compile(r"\bISTHMUS_[A-Z0-9_]*[A-Z0-9]\b")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def code_of(path: Path) -> Iterator[str]:
    """Every line of a fenced block, then every inline code span, of a markdown file (or every line)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".md":
        yield from text.splitlines()
        return
    for block in FENCE.findall(text):
        yield from re.sub(r"\\\n\s*", " ", block).splitlines()  # continuation lines joined
    yield from SPAN.findall(FENCE.sub("", text))


def commands(path: Path) -> Iterator[list[str]]:
    """Shell commands in the docs' code, as token lists: a line is split at && || ; | & and a comment,
    leading ``VAR=value`` assignments, a ``$`` prompt and a ``.venv/bin/`` prefix are dropped."""
    for line in code_of(path):
        line = re.sub(r"(^|\s)#.*$", "", line)
        for segment in re.split(r"&&|\|\||;|\||&(?!\w)", line):
            try:
                tokens = shlex.split(segment)
            except ValueError:
                tokens = segment.split()
            while tokens and (
                tokens[0] in {"$", "do", "then"} or re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", tokens[0])
            ):
                tokens = tokens[1:]
            if tokens:
                tokens[0] = tokens[0].removeprefix(".venv/bin/")
                yield tokens


def named(first: str) -> list[tuple[str, list[str]]]:
    """(doc, tokens) of every command in the docs whose program is ``first``."""
    return [
        (rel(path), tokens)
        for path in [*DOCS, *COMMAND_TEXTS]
        for tokens in commands(path)
        if tokens[0] == first
    ]


# -- make targets --------------------------------------------------------------------------------------


def test_every_make_target_named_in_the_docs_exists() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([A-Za-z0-9][\w.-]*)\s*:(?!=)", makefile, re.M))
    missing = [
        f"{doc}: make {word}"
        for doc, tokens in named("make")
        for word in tokens[1:]
        if not word.startswith("-") and "=" not in word and word not in targets
    ]
    assert not missing, "make targets the Makefile lacks:\n" + "\n".join(missing)


# -- the isthmus CLI -----------------------------------------------------------------------------------


def cli() -> Any:
    """The `isthmus` console script as a click command tree, found through its entry point (wherever the
    CLI lives). Typed loosely: typer may vendor its own click, so groups are told by their ``commands``."""
    (entry,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "isthmus"]
    app: Any = entry.load()
    return typer.main.get_command(app) if isinstance(app, typer.Typer) else app


def _options(command: Any) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")} | {"--help"}


def resolve(tokens: list[str]) -> tuple[Any, str]:
    """The (sub)command the tokens after ``isthmus`` select, or None and the word that is unknown."""
    command = cli()
    words = [t for t in tokens[1:] if not t.startswith("-")]
    for word in words:
        if not hasattr(command, "commands"):
            break
        sub = command.commands.get(word)
        if sub is None:
            return None, word
        command = sub
    return command, ""


def test_every_isthmus_command_and_option_named_in_the_docs_exists() -> None:
    problems = []
    uses = named("isthmus")
    assert uses, "no `isthmus` command found in the docs: the parser is broken"
    for doc, tokens in uses:
        shown = " ".join(tokens)
        command, unknown = resolve(tokens)
        if command is None:
            problems.append(f"{doc}: `{shown}`: no command {unknown!r}")
            continue
        problems += [f"{doc}: `{shown}`: {p}" for p in _check_arguments(command, tokens)]
    assert not problems, "\n".join(problems)


def _check_arguments(command: Any, tokens: list[str]) -> list[str]:
    """Unknown options, and more positional arguments than the command takes (an option that takes a
    value consumes the next token)."""
    params = {o: p for p in command.params for o in (*p.opts, *p.secondary_opts)}
    takes = [p.nargs for p in command.params if p.param_type_name == "argument"]
    problems, positional = [], 0
    rest = tokens[1 + len(_path_of(tokens)) :]
    while rest:
        token, rest = rest[0].strip("[]"), rest[1:]
        option = token.split("=")[0]
        if not option.startswith("-"):
            positional += 1
            continue
        param = params.get(option)
        if param is None and option not in _options(command):
            problems.append(f"{command.name} has no option {option}")
        elif param is not None and not (param.is_flag or param.count) and "=" not in token and rest:
            rest = rest[1:]
    if -1 not in takes and positional > sum(takes):
        problems.append(f"{command.name} takes {sum(takes)} argument(s), {positional} given")
    return problems


def _path_of(tokens: list[str]) -> list[str]:
    """The (sub)command words of ``isthmus …`` (``tenant create`` …)."""
    command, path = cli(), []
    for word in tokens[1:]:
        if not hasattr(command, "commands") or word not in command.commands:
            break
        command = command.commands[word]
        path.append(word)
    return path


# -- python -m modules ---------------------------------------------------------------------------------


def test_every_python_module_run_in_the_docs_exists() -> None:
    missing = []
    for program in ("python", "python3"):
        for doc, tokens in named(program):
            if "-m" in tokens[:-1]:
                module = tokens[tokens.index("-m") + 1]
                if module not in {"pytest", "pip"} and importlib.util.find_spec(module) is None:
                    missing.append(f"{doc}: python -m {module}")
    assert not missing, "modules that do not exist:\n" + "\n".join(missing)


# -- repository paths ----------------------------------------------------------------------------------

PATH_SPAN = re.compile(r"[\w.-]+(?:/[\w.-]+)+/?")


def _package_dirs() -> dict[str, Path]:
    """Top-level Python packages of the workspace (``isthmus_core`` -> services/core/isthmus_core …)."""
    found = {}
    for pyproject in [*ROOT.glob("services/*/pyproject.toml"), ROOT / "operators" / "pyproject.toml"]:
        for pkg in pyproject.parent.iterdir():
            if pkg.is_dir() and (pkg / "__init__.py").is_file():
                found[pkg.name] = pkg
    return found


def test_every_repository_path_named_in_the_docs_exists() -> None:
    """A code span that starts with a top-level folder (``tests/…``) or a package (``isthmus_core/…``)
    must exist. Placeholders (``<svc>``), globs and paths outside the repository are not checked."""
    tops = {p.name for p in ROOT.iterdir() if not p.name.startswith(".")}
    packages = _package_dirs()
    missing = []
    for path in DOCS:
        for span in code_of(path):
            for candidate in span.split():
                if not PATH_SPAN.fullmatch(candidate) or "..." in candidate:
                    continue
                first, _, rest = candidate.partition("/")
                if first in tops:
                    exists = (ROOT / candidate).exists()
                elif first in packages:
                    exists = (packages[first] / rest).exists()
                else:
                    continue
                if not exists:
                    missing.append(f"{rel(path)}: {candidate}")
    assert not missing, "paths that do not exist:\n" + "\n".join(sorted(set(missing)))


# -- environment variables -----------------------------------------------------------------------------


def settings_classes() -> list[type[SectionSettings]]:
    return [CommonSettings, OperatorSettings, *(m.settings_cls for m in MODULES)]


def settings_env_vars() -> set[str]:
    return {cls.env_prefix_for() + name.upper() for cls in settings_classes() for name in cls.model_fields}


def cli_env_vars() -> set[str]:
    def walk(command: Any) -> Iterator[str]:
        for param in command.params:
            envvar = param.envvar
            yield from [envvar] if isinstance(envvar, str) else envvar or []
        if hasattr(command, "commands"):
            for sub in command.commands.values():
                yield from walk(sub)

    return set(walk(cli()))


def test_other_readers_read_their_variables() -> None:
    for var, reader in OTHER_READERS.items():
        assert var in (ROOT / reader).read_text(encoding="utf-8"), f"{reader} no longer reads {var}"


@pytest.mark.parametrize(
    "sources", [pytest.param(DOCS, id="docs"), pytest.param(ENV_SOURCES, id="image-chart-operator-terraform")]
)
def test_every_isthmus_env_var_named_or_set_is_read_by_something(sources: list[Path]) -> None:
    """An ``ISTHMUS_*`` variable the docs name, or the chart or the operator set, must be a field of a
    settings class, a CLI option's variable, or one of :data:`OTHER_READERS` — never a name nothing reads."""
    readers = settings_env_vars() | cli_env_vars() | set(OTHER_READERS)
    unread = sorted(
        {
            f"{rel(path)}: {var}"
            for path in sources
            for var in ENV_VAR.findall(path.read_text(encoding="utf-8"))
            if var not in readers
        }
    )
    assert not unread, "ISTHMUS_* variables nothing reads:\n" + "\n".join(unread)


# -- metric names --------------------------------------------------------------------------------------


def test_every_prometheus_metric_named_in_the_docs_is_defined() -> None:
    defined = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "services").rglob("*.py"))
    missing = sorted(
        {
            f"{rel(path)}: {name}"
            for path in DOCS
            for name in re.findall(
                r"\bisthmus_(?:grpc|bus|ask|guardrail|eval|admission|cache)_[a-z_]+\b", path.read_text()
            )
            # a counter family may be defined without its exposed "_total" suffix
            if f'"{name}"' not in defined and f'"{name.removesuffix("_total")}"' not in defined
        }
    )
    assert not missing, "metrics no code defines:\n" + "\n".join(missing)


# -- the README's settings table -----------------------------------------------------------------------


def test_every_setting_in_the_readme_table_is_a_field_of_its_section() -> None:
    """Rows ``| `[section]` (`ISTHMUS_…`) | `key` (default), `key` … |``: each key outside the
    parentheses (the defaults and values) is a field of that section's settings class; ``kafka_sasl_*``
    stands for every field with that prefix."""
    by_section = {cls.section: cls for cls in settings_classes()}
    rows = re.findall(r"^\| `\[([\w-]+)\]` \([^|]*\) \| (.*) \|$", (ROOT / "README.md").read_text(), re.M)
    assert len(rows) >= 7, "the README's settings table was not found"
    problems = []
    for section, cell in rows:
        fields = set(by_section[section].model_fields)
        depth, outside = 0, []
        for ch in cell:
            depth += ch == "("
            if depth == 0:
                outside.append(ch)
            depth -= ch == ")" and depth > 0
        for key in re.findall(r"`([a-z][a-z0-9_]*\*?)`", "".join(outside)):
            ok = any(f.startswith(key[:-1]) for f in fields) if key.endswith("*") else key in fields
            if not ok:
                problems.append(f"[{section}] {key}")
    assert not problems, "README settings that no settings class has:\n" + "\n".join(problems)
