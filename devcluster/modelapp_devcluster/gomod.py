"""Pure go.mod reading and writing for the helper modules that build Kubernetes and etcd.

Why a helper module: k8s.io/kubernetes (and etcd's server module) `replace` their sibling modules
with local paths (`k8s.io/api => ./staging/src/k8s.io/api`), which `go install module@version`
refuses. A helper module that requires the main module and replaces each of those siblings with
its published version builds fine. The list comes from the downloaded go.mod, never hard-coded.
"""

from __future__ import annotations

import re

_REPLACE_LINE = re.compile(r"^\s*(?P<old>\S+)(?:\s+\S+)?\s*=>\s*(?P<new>\S+)(?:\s+(?P<ver>\S+))?\s*$")
_REQUIRE_LINE = re.compile(r"^\s*(?P<mod>\S+)\s+(?P<ver>v\S+)")
_GO_LINE = re.compile(r"^go\s+(?P<ver>\d+\.\d+(?:\.\d+)?)\s*$", re.MULTILINE)


def _directive_lines(go_mod: str, directive: str) -> list[str]:
    """The entries of every `directive` (single-line or parenthesised block), comments stripped."""
    entries: list[str] = []
    in_block = False
    for raw in go_mod.splitlines():
        line = raw.split("//", 1)[0].strip()
        if in_block:
            if line == ")":
                in_block = False
            elif line:
                entries.append(line)
        elif line == f"{directive} (":
            in_block = True
        elif line.startswith(f"{directive} "):
            entries.append(line[len(directive) + 1 :].strip())
    return entries


def required_modules(go_mod: str) -> set[str]:
    """Module paths named in `require` directives."""
    return {m.group("mod") for line in _directive_lines(go_mod, "require") if (m := _REQUIRE_LINE.match(line))}


def local_replacements(go_mod: str) -> list[str]:
    """Required modules that the go.mod replaces with a local path (`./...` or `../...`), sorted.

    Replacements of modules that are not required (etcd's `./FORBIDDEN_DEPENDENCY` guards) are left
    out: a helper module must not pull them in.
    """
    required = required_modules(go_mod)
    found = set()
    for line in _directive_lines(go_mod, "replace"):
        m = _REPLACE_LINE.match(line)
        if m and m.group("new").startswith((".", "/")) and m.group("old") in required:
            found.add(m.group("old"))
    return sorted(found)


def module_replacements(go_mod: str) -> list[str]:
    """`replace` entries that point at another module version (`old => new vX`), as written, sorted.

    A main module's forks (Traefik's `github.com/gorilla/mux => github.com/containous/mux v0...`) are
    ignored by Go when it is only required, so a helper module repeats them to build what was released.
    """
    found = []
    for line in _directive_lines(go_mod, "replace"):
        m = _REPLACE_LINE.match(line)
        if m and not m.group("new").startswith((".", "/")) and m.group("ver"):
            found.append(f"{m.group('old')} => {m.group('new')} {m.group('ver')}")
    return sorted(found)


def excludes(go_mod: str) -> list[str]:
    """`exclude` entries (`module version`), which a helper module repeats for the same reason."""
    return sorted(" ".join(line.split()) for line in _directive_lines(go_mod, "exclude"))


def go_directive(go_mod: str) -> str:
    """The `go` version line of a go.mod (the helper module needs at least the same)."""
    m = _GO_LINE.search(go_mod)
    if m is None:
        raise ValueError("go.mod has no `go` directive")
    return m.group("ver")


def helper_go_mod(*, name: str, go_version: str, module: str, version: str, replaced: list[str],
                  replace_version: str, forks: list[str] | None = None, excluded: list[str] | None = None) -> str:
    """The helper module's go.mod: require `module@version`, pin every replaced sibling to a version.

    `forks` (`module_replacements`) and `excluded` (`excludes`) are repeated as the main module wrote them.
    """
    lines = [f"module {name}", "", f"go {go_version}", "", f"require {module} {version}", ""]
    entries = [f"{mod} => {mod} {replace_version}" for mod in replaced] + list(forks or [])
    if entries:
        lines.append("replace (")
        lines.extend(f"\t{entry}" for entry in entries)
        lines.append(")")
    if excluded:
        lines.append("exclude (")
        lines.extend(f"\t{entry}" for entry in excluded)
        lines.append(")")
    return "\n".join(lines) + "\n"


def tools_go(packages: list[str]) -> str:
    """A `tools` build-tagged file importing the main packages, so `go mod tidy` keeps their deps."""
    imports = "\n".join(f'\t_ "{pkg}"' for pkg in packages)
    return f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n"
