"""A `wasi:http` handler in Python, built into a component by componentize-py for the serve tests.

Any request: 200 `hello from python: <METHOD> <path-with-query>`. A path ending in `/echo`: 200
with the request's body.
"""

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import types
from wit_world.imports.types import Fields, OutgoingBody, OutgoingResponse, ResponseOutparam

METHODS = {
    types.Method_Get: "GET",
    types.Method_Head: "HEAD",
    types.Method_Post: "POST",
    types.Method_Put: "PUT",
    types.Method_Delete: "DELETE",
    types.Method_Connect: "CONNECT",
    types.Method_Options: "OPTIONS",
    types.Method_Trace: "TRACE",
    types.Method_Patch: "PATCH",
}


def method_name(method) -> str:
    if isinstance(method, types.Method_Other):
        return method.value
    return METHODS[type(method)]


def read_body(request) -> bytes:
    body = request.consume()
    data = b""
    with body.stream() as stream:
        while True:
            try:
                data += stream.blocking_read(65536)
            except Err:
                break
    return data


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request, response_out) -> None:
        path = request.path_with_query() or "/"
        if path.split("?")[0].endswith("/echo"):
            data = read_body(request)
        else:
            data = f"hello from python: {method_name(request.method())} {path}\n".encode()
        response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with body.write() as stream:
            for start in range(0, len(data), 4096):
                stream.blocking_write_and_flush(data[start : start + 4096])
        OutgoingBody.finish(body, None)
