// A `wasi:http` handler in JavaScript, built into a component by jco and componentize-js for
// the serve tests.
//
// Any request: 200 `hello from js: <METHOD> <path-with-query>`. A path ending in `/echo`: 200
// with the request's body.

import {
  Fields,
  OutgoingBody,
  OutgoingResponse,
  ResponseOutparam,
} from 'wasi:http/types@0.2.12';

function methodName(method) {
  return method.tag === 'other' ? method.val : method.tag.toUpperCase();
}

function readBody(request) {
  const body = request.consume();
  const stream = body.stream();
  const chunks = [];
  for (;;) {
    try {
      chunks.push(stream.blockingRead(65536n));
    } catch (e) {
      break;
    }
  }
  stream[Symbol.dispose]?.();
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const data = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    data.set(c, at);
    at += c.length;
  }
  return data;
}

export const incomingHandler = {
  handle(request, responseOut) {
    const path = request.pathWithQuery() ?? '/';
    const data = path.split('?')[0].endsWith('/echo')
      ? readBody(request)
      : new TextEncoder().encode(`hello from js: ${methodName(request.method())} ${path}\n`);
    const response = new OutgoingResponse(
      Fields.fromList([['content-type', new TextEncoder().encode('text/plain')]]),
    );
    const body = response.body();
    ResponseOutparam.set(responseOut, { tag: 'ok', val: response });
    const stream = body.write();
    for (let start = 0; start < data.length; start += 4096) {
      stream.blockingWriteAndFlush(data.subarray(start, start + 4096));
    }
    stream[Symbol.dispose]?.();
    OutgoingBody.finish(body, undefined);
  },
};
