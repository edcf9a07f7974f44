"""``isthmus config print|verify``: the effective settings of a target."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from isthmus_cli.options import ConfigFile, Target
from isthmus_cli.output import console, fail
from isthmus_core.errors import ConfigurationError

app = typer.Typer(help="Print or verify the settings.", no_args_is_help=True)


def _load_sections(target: str, config: Path | None) -> dict[str, Any]:
    from isthmus_cli.modules import MODULES
    from isthmus_core.runtime.runtime import resolve_targets
    from isthmus_core.settings import CommonSettings, load_all

    mods = resolve_targets(target, MODULES)
    return load_all([CommonSettings, *(m.settings_cls for m in mods)], config)


@app.command("print")
def config_print(target: Target = "all", config: ConfigFile = None) -> None:
    """Print the effective settings of a target (secrets masked) as JSON."""
    from isthmus_core.settings import masked

    try:
        sections = _load_sections(target, config)
    except ConfigurationError as exc:
        fail(str(exc), 2)
    console.print_json(json.dumps({name: masked(s) for name, s in sections.items()}))


@app.command("verify")
def config_verify(target: Target = "all", config: ConfigFile = None) -> None:
    """Validate every setting of a target (and that model files exist); exit 2 listing all problems."""
    try:
        sections = _load_sections(target, config)
        emb = sections.get("embedding")
        if emb is not None:
            from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir

            model_dir = emb.model_dir or bundled_model_dir(BGE_SMALL_EN)
            missing = [f for f in ("model.onnx", "tokenizer.json") if not (Path(model_dir) / f).is_file()]
            if missing:
                raise ConfigurationError(f"[embedding] model_dir {model_dir} lacks {', '.join(missing)}")
    except ConfigurationError as exc:
        fail(str(exc), 2)
    console.print(f"[green]ok[/green]: settings for {', '.join(sections)} are valid")
