"""MkDocs hooks: the parts of the pages that are generated from the code at build time.

A page asks for a generated part with an HTML comment (invisible where the Markdown is read
as it is, e.g. on GitHub):

* ``<!-- sslkit:help pretrain -->``: ``sslkit pretrain --help`` as click prints it
  (``<!-- sslkit:help -->`` for ``sslkit --help``);
* ``<!-- sslkit:method-options hcsc -->``: a method's settings (``--set method.NAME=VALUE``)
  from the ``hp(default, help)`` fields of its ``Config``;
  ``<!-- sslkit:addon-options cld moco -->``: the settings an add-on adds to a host;
* ``<!-- sslkit:recipes hcsc -->``: the recipes shipped for a method, from ``configs/``;
  ``<!-- sslkit:method-defaults hcsc -->``: what the method sets when no recipe does;
* ``<!-- sslkit:train-defaults -->`` / ``<!-- sslkit:augment-defaults -->``: the ``train``
  and ``augment`` sections' defaults;
* ``<!-- sslkit:include BENCHMARKS.md -->``: a file of the repository (one copy), its links
  made relative to the site; ``<!-- sslkit:include README.md first-run -->`` includes the
  part between ``<!-- first-run:start -->`` and ``<!-- first-run:end -->``.

An unknown marker, command, method or file fails the build.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"<!-- sslkit:(?P<kind>[a-z-]+)(?P<args>(?: [^ >]+)*) -->")
#: repository files that are pages of the site (the rest are not published)
PAGES = {"README.md": "index.md", "BENCHMARKS.md": "benchmarks.md",
         "RELIABILITY.md": "reliability.md", "CHANGELOG.md": "changelog.md"}
LINK = re.compile(r"(?P<bang>!?)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)\)")
CODE = re.compile(r"<code>.*?</code>", flags=re.S)
ROLE = re.compile(r":(?:func|class|data|meth|mod|attr|obj|exc):(<code>)~?")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace every ``<!-- sslkit:... -->`` marker of a page by what it stands for."""
    def render(match: re.Match) -> str:
        kind, args = match["kind"], match["args"].split()
        try:
            return RENDERERS[kind](page.file.src_uri, *args)
        except KeyError as exc:
            raise PluginError(f"{page.file.src_uri}: unknown marker sslkit:{kind}") from exc
    return MARKER.sub(render, markdown)


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """Docstrings use Sphinx roles (``:func:`name```) and ``Example::``: show them plainly.
    A table cell's code escapes its pipes (``a\\|b``, as GitHub needs): show them plainly."""
    html = CODE.sub(lambda match: match[0].replace("\\|", "|"), html)
    return ROLE.sub(r"\1", html).replace("::</p>", ":</p>")


# -- the generated parts -----------------------------------------------------------------


def help_text(page: str, *command: str) -> str:
    """A fenced block with ``sslkit [COMMAND] --help``, exactly as click prints it."""
    from click.testing import CliRunner

    from sslkit.cli import cli

    result = CliRunner().invoke(cli, [*command, "--help"], prog_name="sslkit",
                                terminal_width=100)  # fmt: skip
    if result.exit_code != 0:
        raise PluginError(f"{page}: sslkit {' '.join(command)} --help failed:\n{result.output}")
    prompt = " ".join(["$ sslkit", *command, "--help"])
    return f"```text\n{prompt}\n{result.output.rstrip()}\n```\n"


def _settings(name: str) -> dict[str, dict[str, Any]]:
    from sslkit.api.methods import list_methods

    return list_methods(show=name).to_dict()["hyperparameters"]


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|")


def _settings_table(settings: dict[str, dict[str, Any]]) -> str:
    lines = ["| setting | default | meaning |", "|---|---|---|"]
    for name, setting in settings.items():
        default = _cell(repr(setting["default"]) if isinstance(setting["default"], str)
                        else setting["default"])  # fmt: skip
        lines.append(f"| `method.{name}` | `{default}` | {_cell(setting['help'])} |")
    return "\n".join(lines) + "\n"


def method_options(page: str, name: str) -> str:
    """The settings of a method (``--set method.NAME=VALUE``), defaults and help."""
    return _settings_table(_settings(name))


def addon_options(page: str, addon: str, host: str) -> str:
    """The settings an add-on brings to ``host`` (those of ``host+addon`` the host lacks)."""
    own = _settings(host)
    combined = _settings(f"{host}+{addon}")
    return _settings_table({k: v for k, v in combined.items() if k not in own})


def recipes(page: str, method: str) -> str:
    """The recipes shipped for ``method``: name, what they train, their first sentence."""
    from sslkit.config import load_yaml, recipe_names, recipes_dir, resolve
    from sslkit.methods.registry import get_method

    names = recipe_names(method)
    if not names:
        raise PluginError(f"{page}: no recipes for {method}")
    method_class = get_method(method)
    lines = ["| `--config` | applied automatically to | arch | epochs | batch | lr | about it |",
             "|---|---|---|---|---|---|---|"]
    for name in names:
        path = recipes_dir() / f"{name}.yaml"
        config = resolve(method_class, load_yaml(path))
        train = config["train"]
        dataset = path.stem
        automatic = f"`{dataset}` data" if _is_data_name(dataset) else "—"
        arch = f"`{config['model']['arch']}`" if config["model"]["arch"] else "by image size"
        lines.append(f"| `{name}` | {automatic} | {arch} "
                     f"| {train['epochs']} | {train['batch_size']} | {train['lr']} "
                     f"| {_cell(_first_sentence(path))} |")
    return "\n".join(lines) + "\n"


def _is_data_name(name: str) -> bool:
    """Whether a recipe's file name is a dataset's name (so the recipe applies itself)."""
    from sslkit.data.specs import KNOWN_DATASETS

    return name in KNOWN_DATASETS


def _first_sentence(path: Path) -> str:
    """The first sentence of a recipe's header comment."""
    words = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        words.append(line.lstrip("#").strip())
    # the recipe's pointer to its documentation page is not news on that page
    text = re.sub(r";\s*docs/[\w/.+-]+\.md", "", " ".join(words))
    text = re.sub(r"\s*\((?:published numbers: )?docs/[\w/.+-]+\.md\)", "", text)
    end = re.search(r"\.(\s|$)", text)
    return text[: end.start() + 1] if end else text


def method_defaults(page: str, name: str) -> str:
    """What a method sets in the ``train`` and ``augment`` sections when no recipe does."""
    from sslkit.methods.base import COMMON_AUGMENT
    from sslkit.methods.registry import get_method

    method_class = get_method(name)
    train = ", ".join(f"`{key}: {value}`" for key, value in method_class.default_train.items())
    augment = {key: value for key, value in method_class.default_augment.items()
               if key not in COMMON_AUGMENT or COMMON_AUGMENT[key] != value}  # fmt: skip
    changed = ", ".join(f"`{key}: {value}`" for key, value in augment.items())
    changed = f"{changed} (the rest as the shared defaults)" if changed else "the shared defaults"
    return (f"- `train`: {train or 'the shared defaults'} (over the shared "
            f"[`train` defaults](../configuration.md#train));\n"
            f"- `augment`: {changed} ([`augment` defaults](../configuration.md#augment)).\n")


def _commented_defaults(source: str, name: str, values: dict[str, Any]) -> str:
    """A table of a defaults dict, with the comment written beside each key in the code."""
    comments = dict(re.findall(r'^\s+"(\w+)": [^#\n]*#\s*(.*)$', source, flags=re.M))
    lines = [f"| `{name}.` key | default | note |", "|---|---|---|"]
    for key, value in values.items():
        lines.append(f"| `{key}` | `{_cell(value)}` | {_cell(comments.get(key, ''))} |")
    return "\n".join(lines) + "\n"


def train_defaults(page: str) -> str:
    """The ``train`` section's defaults (a method's ``default_train`` overrides some)."""
    import inspect

    import sslkit.config

    return _commented_defaults(inspect.getsource(sslkit.config), "train",
                               sslkit.config.TRAIN_DEFAULTS)  # fmt: skip


def augment_defaults(page: str) -> str:
    """The ``augment`` section's shared defaults (a method's ``default_augment`` may differ)."""
    import inspect

    import sslkit.methods.base

    return _commented_defaults(inspect.getsource(sslkit.methods.base), "augment",
                               sslkit.methods.base.COMMON_AUGMENT)  # fmt: skip


def include(page: str, name: str, section: str | None = None) -> str:
    """A file of the repository, or one marked section of it, with site-relative links."""
    path = ROOT / name
    if not path.is_file():
        raise PluginError(f"{page}: cannot include {name}: no such file in the repository")
    text = path.read_text()
    if section is not None:
        start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
        if start not in text or end not in text:
            raise PluginError(f"{page}: {name} has no section marked {start} ... {end}")
        text = text[text.index(start) + len(start) : text.index(end)]
    return LINK.sub(lambda match: _site_link(match, page), text)


def _site_link(match: re.Match, page: str) -> str:
    """A link written relative to the repository's root, made relative to ``page``."""
    target = match["target"]
    if re.match(r"^[a-z]+:|^#|^mailto:", target):
        return match[0]
    path, _, anchor = target.partition("#")
    if path in PAGES:
        site = PAGES[path]
    elif path.startswith("docs/"):
        site = path[len("docs/") :]
    else:  # a file of the repository that is not on the site: its name, unlinked
        return match[0] if match["bang"] else f"`{match['text'].strip('`')}`"
    relative = posixpath.relpath(site, posixpath.dirname(page) or ".")
    return f"{match['bang']}[{match['text']}]({relative}{'#' + anchor if anchor else ''})"


RENDERERS = {"help": help_text, "method-options": method_options,
             "addon-options": addon_options, "recipes": recipes,
             "method-defaults": method_defaults,
             "train-defaults": train_defaults, "augment-defaults": augment_defaults,
             "include": include}  # fmt: skip
