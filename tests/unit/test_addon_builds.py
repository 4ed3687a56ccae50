"""Add-ons built from the Go module proxy (Traefik, metrics-server): the helper module repeats the forks.

Design notes: Go ignores a required module's `replace` and `exclude` directives, and `go install
module@version` refuses a module that has any; so Traefik is built through a helper module that requires it
and repeats its module-to-module replacements (its forks) and excludes, while local-folder replacements are
left to `local_replacements`. The go.mod below is a cut of Traefik v3.6's own.
"""

from __future__ import annotations

from modelapp_devcluster import binaries, gomod, versions

TRAEFIK_GO_MOD = """module github.com/traefik/traefik/v3

go 1.24.0

require (
\tgithub.com/abbot/go-http-auth v0.0.0-00010101000000-000000000000 // No tag on the repo.
\tgithub.com/gorilla/mux v1.8.1
\tgithub.com/mailgun/minheap v0.0.0-20170619185613-3dbe6c6bf55f // indirect
)

// Containous forks
replace (
\tgithub.com/abbot/go-http-auth => github.com/containous/go-http-auth v0.4.1-0.20200324110947-a37a7636d23e
\tgithub.com/gorilla/mux => github.com/containous/mux v0.0.0-20250523120546-41b6ec3aed59
)

replace github.com/mailgun/minheap => github.com/containous/minheap v0.0.0-20190809180810-6e71eb837595

// ambiguous import
exclude github.com/tencentcloud/tencentcloud-sdk-go v3.0.83+incompatible
"""


def test_forks_and_excludes_are_read_as_written() -> None:
    assert gomod.module_replacements(TRAEFIK_GO_MOD) == [
        "github.com/abbot/go-http-auth => github.com/containous/go-http-auth v0.4.1-0.20200324110947-a37a7636d23e",
        "github.com/gorilla/mux => github.com/containous/mux v0.0.0-20250523120546-41b6ec3aed59",
        "github.com/mailgun/minheap => github.com/containous/minheap v0.0.0-20190809180810-6e71eb837595",
    ]
    assert gomod.excludes(TRAEFIK_GO_MOD) == ["github.com/tencentcloud/tencentcloud-sdk-go v3.0.83+incompatible"]
    assert gomod.local_replacements(TRAEFIK_GO_MOD) == []


def test_helper_go_mod_repeats_forks_and_excludes() -> None:
    text = gomod.helper_go_mod(name="x/build", go_version="1.24.0", module=versions.TRAEFIK.module,
                               version=versions.TRAEFIK.version, replaced=[], replace_version="unused",
                               forks=gomod.module_replacements(TRAEFIK_GO_MOD),
                               excluded=gomod.excludes(TRAEFIK_GO_MOD))  # fmt: skip
    assert f"require github.com/traefik/traefik/v3 {versions.TRAEFIK.version}\n" in text
    assert "\tgithub.com/gorilla/mux => github.com/containous/mux v0.0.0-20250523120546-41b6ec3aed59\n" in text
    assert "exclude (\n\tgithub.com/tencentcloud/tencentcloud-sdk-go v3.0.83+incompatible\n)\n" in text
    # the helper parses back: the main module is its one requirement
    assert gomod.required_modules(text) == {"github.com/traefik/traefik/v3"}


def test_traefik_reports_its_release() -> None:
    flags = binaries.version_ldflags(versions.TRAEFIK)
    assert f"-X github.com/traefik/traefik/v3/pkg/version.Version={versions.TRAEFIK_VERSION}" in flags
    assert binaries.version_ldflags(versions.METRICS_SERVER) == "-s -w"
