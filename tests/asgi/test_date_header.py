"""Every rejection carries `Date` (RFC 9110 IMF-fixdate) from the renderer's clock, so that a
client told its timestamp is off can set its clock by the server's: the documented answer, an
`on_error` response that sets none, a websocket's denial."""

from __future__ import annotations

from email.utils import formatdate

from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, Response

from tba_guard import ErrorCode, TBAError
from tba_guard.asgi.answers import Rejections
from tba_guard.core.request import OAuthRequest
from tests.support.signing import NOW, Clock, make_settings

REQUEST = OAuthRequest("GET", "https://api.example.com/")
IMF = formatdate(NOW, usegmt=True)  # "Tue, 14 Nov 2023 22:13:20 GMT"


def test_the_documented_answer_is_dated_by_the_injected_clock() -> None:
    answer = Rejections(make_settings(), clock=Clock()).default(
        TBAError(ErrorCode.INVALID_TIMESTAMP, "off"), REQUEST
    )
    assert dict(answer.headers)[b"date"] == b"Tue, 14 Nov 2023 22:13:20 GMT" == IMF.encode()


def test_an_opaque_answer_is_dated_too() -> None:
    rejections = Rejections(make_settings(error_detail="opaque"), clock=Clock())
    answer = rejections.default(TBAError(ErrorCode.NONCE_USED, "used"), REQUEST)
    assert dict(answer.headers)[b"date"] == IMF.encode()


async def test_an_on_error_response_without_a_date_gets_the_guards() -> None:
    def plain(connection: HTTPConnection, error: TBAError) -> Response:
        return PlainTextResponse("no", status_code=401)

    rejections = Rejections(make_settings(), plain, clock=Clock())
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    response = await rejections.response(
        HTTPConnection(scope), TBAError(ErrorCode.INVALID_SIGNATURE), REQUEST
    )
    assert response.headers["date"] == IMF


async def test_an_on_error_response_keeps_its_own_date() -> None:
    def dated(connection: HTTPConnection, error: TBAError) -> Response:
        return PlainTextResponse("no", status_code=401, headers={"Date": "its own"})

    rejections = Rejections(make_settings(), dated, clock=Clock())
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    response = await rejections.response(
        HTTPConnection(scope), TBAError(ErrorCode.INVALID_SIGNATURE), REQUEST
    )
    assert response.headers.getlist("date") == ["its own"]


async def test_a_websocket_denial_is_dated() -> None:
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "extensions": {"websocket.http.response": {}}}
    rejections = Rejections(make_settings(), clock=Clock())
    await rejections.answer(scope, receive, send, TBAError(ErrorCode.INVALID_SIGNATURE), REQUEST)
    headers = dict(sent[0]["headers"])  # type: ignore[call-overload]
    assert headers[b"date"] == IMF.encode()
