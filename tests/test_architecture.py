"""The architecture stays as the tree shows it, and the docs stay true to the CLI and the results.

- import-linter's contracts (pyproject.toml): one-way layers and no import cycles; and proof that
  they fail on an upward import and on a cycle, on a copy of the tree.
- Imports sit at the top of modules, except third-party ones deferred on purpose, with the reason
  in a comment on the line or the line above.
- Every `raympc ...` command line in the README and docs/ parses against the real parser, and every
  command's `--help` runs.
- docs/results.md and the README's headline table match the files in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from raympc.cli import build_parser
from raympc.commands import results

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("raympc", "netsim", "workloads")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "pyproject.toml", "--no-cache"], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(cwd), "PATH": ""})


def test_layers_hold_and_nothing_imports_in_a_cycle():
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "2 kept, 0 broken" in proc.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("raympc/runtime/values.py", "import raympc.commands.demo", "layers"),  # the runtime reaching up
    ("netsim/profile.py", "import raympc.errors", "layers"),  # netsim must not know raympc
    ("raympc/runtime/compiler.py", "import raympc.runtime.values", "no import cycles"),  # values imports compiler
])
def test_contracts_fail_on_an_upward_import_or_a_cycle(tmp_path, module, line, broken):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.safetensors"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}\n")
    proc = _lint(tmp_path)
    assert proc.returncode != 0
    verdicts = re.findall(r"(layers:|no import cycles).*?(KEPT|BROKEN)", " ".join(proc.stdout.split()))
    assert (broken.rstrip(":") if broken != "layers" else "layers:", "BROKEN") in verdicts, proc.stdout[-3000:]


def _inner_imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, imported module, source line) for every import not at a module's top level."""
    source = path.read_text()
    tree = ast.parse(source)
    top = {id(node) for node in tree.body}
    top |= {id(n) for node in tree.body if isinstance(node, (ast.If, ast.Try)) for n in ast.walk(node)}
    lines = source.splitlines()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
            name = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            found.append((node.lineno, name or "", lines[node.lineno - 1]))
    return found


def _comment_above(lines: list[str], lineno: int) -> str:
    """The comments and imports right above line `lineno` (1-based): a group of deferred imports
    shares one comment."""
    above = []
    for text in reversed(lines[max(0, lineno - 5):lineno - 1]):
        if not text.strip().startswith(("#", "import ", "from ", "try:")):
            break
        above.append(text)
    return "\n".join(above)


def test_imports_sit_at_the_top_unless_deferred_for_a_stated_reason():
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            lines = path.read_text().splitlines()
            for lineno, name, text in _inner_imports(path):
                own = name.split(".")[0] in PACKAGES
                reason = "deferred" in text or "deferred" in _comment_above(lines, lineno)
                if own or not reason:
                    offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {text.strip()}")
    assert not offenders, "imports inside functions (own modules never; others only with '# deferred: why'):\n" + \
        "\n".join(offenders)


def _documented_commands() -> list[tuple[str, str, bool]]:
    """(file, command line, whole) for every `raympc ...` in the README and docs/: lines of code
    blocks are whole commands; inline spans may name a command without all its arguments."""
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
            found += [(doc.name, line, True) for line in _command_lines(block.splitlines())]
        spans = re.findall(r"`(raympc [^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        found += [(doc.name, line, False) for line in _command_lines(spans)]
    return found


ENV_PREFIX = re.compile(r"^((?:[A-Z_]+=\S+ )*)")


def _command_lines(lines: list[str]) -> list[str]:
    """Command lines as written, with any leading `NAME=value` environment assignments."""
    out = []
    for line in lines:
        line = line.split(" #")[0].strip().removeprefix("$ ")
        generic = re.search(r"raympc [A-Z_]+\b", line)  # `raympc COMMAND`: any command
        if re.match(r"([A-Z_]+=\S+ )*raympc ", line) and "..." not in line and not generic:
            out.append(line)
    return out


def _words(line: str) -> list[str]:
    # placeholders in upper case (DIR, SPEC, ...) stand for a value the user chooses
    line = line[len(ENV_PREFIX.match(line).group(1)):]
    return ["x" if re.fullmatch(r"[A-Z][A-Z_]+", w) else w for w in shlex.split(line)[1:] if w != "\\"]


@contextlib.contextmanager
def _environment(line: str):
    """The line's `PYTHONPATH=dirs` (relative to the checkout) on sys.path while it is parsed."""
    env = dict(item.split("=", 1) for item in ENV_PREFIX.match(line).group(1).split())
    added = [str(ROOT / d) for d in env.get("PYTHONPATH", "").split(os.pathsep) if d]
    sys.path[:0] = added
    try:
        yield
    finally:
        del sys.path[:len(added)]


def test_the_docs_quote_many_commands():
    assert sum(whole for _, _, whole in _documented_commands()) >= 15


@pytest.mark.parametrize("doc, line, whole", _documented_commands(),
                         ids=lambda v: v[:60] if isinstance(v, str) else None)
def test_every_documented_command_parses(doc, line, whole):
    words = _words(line)
    if whole:
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), _environment(line):
                build_parser().parse_args(words)
        except SystemExit as exc:
            if exc.code != 0:
                pytest.fail(f"{doc}: `{line}` does not parse: {err.getvalue().strip()[-500:]}")
        return
    parser = build_parser()  # a mention: the command must exist and take the flags it is shown with
    for word in words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs and word in subs[0].choices:
            parser = subs[0].choices[word]
        elif word.startswith("--"):
            assert word.split("=")[0] in parser._option_string_actions, f"{doc}: `{line}`: no {word} in {parser.prog}"
    assert parser.prog != "raympc", f"{doc}: `{line}` names no command"


def _all_command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths += _all_command_paths(sub, prefix + (name,))
    return paths


def test_every_command_has_working_help():
    top = subprocess.run([sys.executable, "-m", "raympc.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert top.returncode == 0 and "sweep" in top.stdout and "results" in top.stdout
    paths = _all_command_paths(build_parser())
    assert len(paths) > 25
    for path in paths[1:]:
        out = io.StringIO()
        with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stdout(out):
            build_parser().parse_args([*path, "--help"])
        assert exit_info.value.code == 0 and "usage: raympc " + " ".join(path) in out.getvalue()


def test_results_page_and_readme_table_match_the_result_files():
    stale = [str(path.relative_to(ROOT)) for path, text in results.rendered().items()
             if not path.exists() or path.read_text() != text]
    assert not stale, f"{stale} differ from benchmarks/results: run `raympc results`"


def test_every_result_file_says_how_to_regenerate_it():
    found = results.load()
    assert {r["kind"] for r in found.values()} >= {"demo", "bench-activations", "bench-netsim"}
    for name, r in found.items():
        p = r["provenance"]
        assert p["command"].startswith("raympc ") and "benchmarks/results" in p["command"], name
        assert p["date"] and p["machine"]["cpus"] and p["versions"]["spu"], name
