"""The lean model-call path's routing decision and the readiness count, as pure functions.

Design notes: `body_plan` decides, from the WSGI environ alone, whether the fast path takes a
request or hands it to Flask (which owns 405/413/415 and odd bodies); every "hand it over" case
is listed here so that no error mapping can silently move. `count_ready` is the readiness rule
across workers, with the process check injected. The end-to-end behaviour of both is tested
against a real `serve` in tests/integration (test_serve.py, test_serve_readiness.py) and through
the Flask test client in test_app.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from modelapp_serving.fastpath import body_plan
from modelapp_serving.readiness import count_ready, parse_marker
from modelapp_serving.routes import MODEL_CALLS

LIMIT = 1000


def environ(**values: str) -> dict[str, Any]:
    return dict(values)


@pytest.mark.parametrize(
    ("env", "binary", "expected"),
    [
        (environ(CONTENT_LENGTH="10", CONTENT_TYPE="application/json"), True, (10, None)),
        (environ(CONTENT_LENGTH="10"), True, (10, None)),
        (environ(CONTENT_LENGTH="10", CONTENT_TYPE="application/json; charset=utf-8"), True, (10, None)),
        (environ(CONTENT_LENGTH="10", CONTENT_TYPE="application/vnd.x+json"), False, (10, None)),
        (environ(CONTENT_LENGTH="10", HTTP_CONTENT_ENCODING="identity"), True, (10, None)),
        (environ(CONTENT_LENGTH="10", HTTP_INFERENCE_HEADER_CONTENT_LENGTH="4"), True, (10, 4)),
        (
            environ(
                CONTENT_LENGTH="10", CONTENT_TYPE="application/octet-stream", HTTP_INFERENCE_HEADER_CONTENT_LENGTH="4"
            ),
            True,
            (10, 4),
        ),
    ],
)
def test_the_plain_cases_take_the_fast_path(
    env: dict[str, Any], binary: bool, expected: tuple[int, int | None]
) -> None:
    assert body_plan(env, max_body_bytes=LIMIT, binary_allowed=binary) == expected


@pytest.mark.parametrize(
    ("env", "binary"),
    [
        (environ(), True),  # chunked or no body: Flask decides
        (environ(CONTENT_LENGTH="x"), True),
        (environ(CONTENT_LENGTH=str(LIMIT + 1)), True),  # 413 is Flask's
        (environ(CONTENT_LENGTH="10", HTTP_CONTENT_ENCODING="gzip"), True),  # 415
        (environ(CONTENT_LENGTH="10", CONTENT_TYPE="text/plain"), True),  # 415
        (environ(CONTENT_LENGTH="10", HTTP_INFERENCE_HEADER_CONTENT_LENGTH="four"), True),  # 400
        (environ(CONTENT_LENGTH="10", CONTENT_TYPE="text/plain", HTTP_INFERENCE_HEADER_CONTENT_LENGTH="4"), True),
        (environ(CONTENT_LENGTH="10", HTTP_INFERENCE_HEADER_CONTENT_LENGTH="4"), False),  # v1 / score
    ],
)
def test_everything_else_goes_to_flask(env: dict[str, Any], binary: bool) -> None:
    assert body_plan(env, max_body_bytes=LIMIT, binary_allowed=binary) is None


def test_routes_match_flasks_rules_and_nothing_more() -> None:
    def rule_of(path: str) -> str | None:
        return next((route.rule for route in MODEL_CALLS if route.pattern.fullmatch(path)), None)

    assert rule_of("/v2/models/iris/infer") == "/v2/models/<name>/infer"
    assert rule_of("/v2/models/iris/versions/7/infer") == "/v2/models/<name>/versions/<version>/infer"
    assert rule_of("/v1/models/iris:predict") == "/v1/models/<name>:predict"
    assert rule_of("/score") == "/score"
    for path in ("/v2/models/iris/infer/", "/v2/models//infer", "/v2/models/a/b/infer", "/score/x", "/v1/models/x"):
        assert rule_of(path) is None, path


def test_ready_counts_live_workers_of_this_master_once() -> None:
    alive = {11, 12}

    def is_worker(pid: int, master: int) -> bool:
        return pid in alive and master == 1

    assert count_ready([(11, 1), (12, 1)], master=1, is_worker=is_worker) == 2
    assert count_ready([(11, 1), (11, 1)], master=1, is_worker=is_worker) == 1
    assert count_ready([(11, 1), (13, 1)], master=1, is_worker=is_worker) == 1  # 13 died unreaped
    assert count_ready([(11, 1), (12, 2)], master=1, is_worker=is_worker) == 1  # another server's marker
    assert count_ready([], master=1, is_worker=is_worker) == 0


def test_only_pid_named_files_holding_a_pid_are_markers() -> None:
    assert parse_marker("123", "45\n") == (123, 45)
    assert parse_marker(".123.tmp", "45") is None
    assert parse_marker("123", "") is None
    assert parse_marker("abc", "45") is None
