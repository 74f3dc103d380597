//! `wasi:http` handler components for the `warrant serve` tests, built from core WAT and a
//! small WIT world, as `components.rs` builds command components.
//!
//! The WIT below declares only the parts of the WASI 0.2.0 interfaces the guests use, with
//! their real names and types (every case of every variant, in order), so that wasmtime's
//! `wasi:http` (0.2.12, which links 0.2.0 imports) type-checks them. Each guest is a core
//! module using the canonical ABI, given the world as metadata and wrapped into a component.

use wit_parser::Resolve;

use crate::components::WASI_IO;

const WASI_HTTP: &str = r#"
package wasi:http@0.2.0;

interface types {
  use wasi:io/streams@0.2.0.{input-stream, output-stream};
  use wasi:io/poll@0.2.0.{pollable};

  variant scheme { HTTP, HTTPS, other(string) }

  record DNS-error-payload { rcode: option<string>, info-code: option<u16> }
  record TLS-alert-received-payload { alert-id: option<u8>, alert-message: option<string> }
  record field-size-payload { field-name: option<string>, field-size: option<u32> }

  variant error-code {
    DNS-timeout,
    DNS-error(DNS-error-payload),
    destination-not-found,
    destination-unavailable,
    destination-IP-prohibited,
    destination-IP-unroutable,
    connection-refused,
    connection-terminated,
    connection-timeout,
    connection-read-timeout,
    connection-write-timeout,
    connection-limit-reached,
    TLS-protocol-error,
    TLS-certificate-error,
    TLS-alert-received(TLS-alert-received-payload),
    HTTP-request-denied,
    HTTP-request-length-required,
    HTTP-request-body-size(option<u64>),
    HTTP-request-method-invalid,
    HTTP-request-URI-invalid,
    HTTP-request-URI-too-long,
    HTTP-request-header-section-size(option<u32>),
    HTTP-request-header-size(option<field-size-payload>),
    HTTP-request-trailer-section-size(option<u32>),
    HTTP-request-trailer-size(field-size-payload),
    HTTP-response-incomplete,
    HTTP-response-header-section-size(option<u32>),
    HTTP-response-header-size(field-size-payload),
    HTTP-response-body-size(option<u64>),
    HTTP-response-trailer-section-size(option<u32>),
    HTTP-response-trailer-size(field-size-payload),
    HTTP-response-transfer-coding(option<string>),
    HTTP-response-content-coding(option<string>),
    HTTP-response-timeout,
    HTTP-upgrade-failed,
    HTTP-protocol-error,
    loop-detected,
    configuration-error,
    internal-error(option<string>),
  }

  resource fields {
    constructor();
  }
  type headers = fields;
  type trailers = fields;

  resource incoming-request {
    path-with-query: func() -> option<string>;
  }

  resource outgoing-request {
    constructor(headers: headers);
    set-path-with-query: func(path-with-query: option<string>) -> result;
    set-scheme: func(scheme: option<scheme>) -> result;
    set-authority: func(authority: option<string>) -> result;
  }

  resource request-options;

  resource response-outparam {
    set: static func(param: response-outparam, response: result<outgoing-response, error-code>);
  }

  type status-code = u16;

  resource incoming-response {
    status: func() -> status-code;
  }

  resource outgoing-response {
    constructor(headers: headers);
    set-status-code: func(status-code: status-code) -> result;
    body: func() -> result<outgoing-body>;
  }

  resource outgoing-body {
    write: func() -> result<output-stream>;
    finish: static func(this: outgoing-body, trailers: option<trailers>) -> result<_, error-code>;
  }

  resource future-incoming-response {
    subscribe: func() -> pollable;
    get: func() -> option<result<result<incoming-response, error-code>>>;
  }
}

interface outgoing-handler {
  use types.{outgoing-request, request-options, future-incoming-response, error-code};
  handle: func(request: outgoing-request, options: option<request-options>) -> result<future-incoming-response, error-code>;
}

interface incoming-handler {
  use types.{incoming-request, response-outparam};
  handle: func(request: incoming-request, response-out: response-outparam);
}
"#;

const WASI_CLI: &str = r#"
package wasi:cli@0.2.0;

interface environment {
  get-environment: func() -> list<tuple<string, string>>;
}

interface exit {
  exit: func(status: result);
}

interface terminal-output {
  resource terminal-output;
}

interface terminal-stdout {
  use terminal-output.{terminal-output};
  get-terminal-stdout: func() -> option<terminal-output>;
}
"#;

const WASI_FILESYSTEM: &str = r#"
package wasi:filesystem@0.2.0;

interface types {
  resource descriptor;
}

interface preopens {
  use types.{descriptor};
  get-directories: func() -> list<tuple<descriptor, string>>;
}
"#;

const WASI_SOCKETS: &str = r#"
package wasi:sockets@0.2.0;

interface network {
  resource network;
}

interface instance-network {
  use network.{network};
  instance-network: func() -> network;
}
"#;

const GUESTS: &str = r#"
package warrant:http-guests;

world handler {
  import wasi:http/types@0.2.0;
  export wasi:http/incoming-handler@0.2.0;
}

world fetcher {
  import wasi:http/types@0.2.0;
  import wasi:http/outgoing-handler@0.2.0;
  export wasi:http/incoming-handler@0.2.0;
}

world everything {
  import wasi:http/types@0.2.0;
  import wasi:cli/environment@0.2.0;
  import wasi:cli/exit@0.2.0;
  import wasi:cli/terminal-stdout@0.2.0;
  import wasi:filesystem/preopens@0.2.0;
  import wasi:sockets/instance-network@0.2.0;
  export wasi:http/incoming-handler@0.2.0;
}
"#;

/// The start of the hello guest's body; the request's path and query follow, then `\n`.
pub const HELLO_BODY_PREFIX: &str = "hello from a warrant http guest: ";

/// What every guest imports to answer, and its allocator. Memory layout: 0..1024 scratch
/// (return areas), 1024..8192 data segments, 8192..12288 a page of `x`, 65536.. the heap.
const PRELUDE: &str = r#"
  (import "wasi:http/types@0.2.0" "[constructor]fields" (func $fields (result i32)))
  (import "wasi:http/types@0.2.0" "[constructor]outgoing-response" (func $response (param i32) (result i32)))
  (import "wasi:http/types@0.2.0" "[method]outgoing-response.body" (func $response_body (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[method]outgoing-body.write" (func $body_write (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[static]outgoing-body.finish" (func $body_finish (param i32 i32 i32 i32)))
  (import "wasi:http/types@0.2.0" "[static]response-outparam.set" (func $set (param i32 i32 i32 i32 i64 i32 i32 i32 i32)))
  (import "wasi:http/types@0.2.0" "[method]incoming-request.path-with-query" (func $path (param i32 i32)))
  (import "wasi:io/streams@0.2.0" "[method]output-stream.blocking-write-and-flush" (func $write_flush (param i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.0" "[resource-drop]output-stream" (func $drop_stream (param i32)))
  (import "wasi:http/types@0.2.0" "[resource-drop]incoming-request" (func $drop_request (param i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (func (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $at i32)
    (local.set $at (i32.and
      (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
      (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $at) (local.get $size)))
    (block $done
      (loop $grow
        (br_if $done (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
        (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))
        (br $grow)))
    (local.get $at))
  ;; Set `out` to a 200 response and return its body's output stream in $stream and the body
  ;; in global $body.
  (global $body (mut i32) (i32.const 0))
  (func $start (param $out i32) (result i32)
    (local $resp i32)
    (local.set $resp (call $response (call $fields)))
    (call $response_body (local.get $resp) (i32.const 0))
    (global.set $body (i32.load (i32.const 4)))
    (call $set (local.get $out) (i32.const 0) (local.get $resp) (i32.const 0) (i64.const 0)
      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
    (call $body_write (global.get $body) (i32.const 0))
    (i32.load (i32.const 4)))
  ;; Write `len` bytes at `ptr` to `stream`, 4096 at a time: 0, or 1 when a write failed.
  (func $write (param $stream i32) (param $ptr i32) (param $len i32) (result i32)
    (local $n i32)
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $len)))
        (local.set $n (select (i32.const 4096) (local.get $len) (i32.gt_u (local.get $len) (i32.const 4096))))
        (call $write_flush (local.get $stream) (local.get $ptr) (local.get $n) (i32.const 16))
        (if (i32.load8_u (i32.const 16)) (then (return (i32.const 1))))
        (local.set $ptr (i32.add (local.get $ptr) (local.get $n)))
        (local.set $len (i32.sub (local.get $len) (local.get $n)))
        (br $more)))
    (i32.const 0))
  ;; Drop `stream` and finish the body.
  (func $finish (param $stream i32)
    (call $drop_stream (local.get $stream))
    (call $body_finish (global.get $body) (i32.const 0) (i32.const 0) (i32.const 32)))
  ;; Write the decimal digits of `n` at `at`: the number of bytes written.
  (func $decimal (param $n i32) (param $at i32) (result i32)
    (local $len i32) (local $tmp i32) (local $i i32)
    (local.set $tmp (local.get $n))
    (loop $count
      (local.set $len (i32.add (local.get $len) (i32.const 1)))
      (local.set $tmp (i32.div_u (local.get $tmp) (i32.const 10)))
      (br_if $count (local.get $tmp)))
    (local.set $i (local.get $len))
    (loop $digits
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (i32.store8 (i32.add (local.get $at) (local.get $i))
        (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digits (local.get $i)))
    (local.get $len))
"#;

/// `text` as a WAT string literal's contents, every byte escaped.
fn wat_bytes(text: &[u8]) -> String {
    text.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// Answers 200 with [`HELLO_BODY_PREFIX`], the request's path and query, and `\n`.
pub fn hello() -> Vec<u8> {
    hello_marked("")
}

/// As [`hello`], with `n` in a data segment of its own: the same behaviour in distinct bytes
/// (so a distinct artifact, compiled on its own), for density measurements.
pub fn hello_numbered(n: u32) -> Vec<u8> {
    hello_marked(&format!(r#"(data (i32.const 12288) "tenant {n}")"#))
}

fn hello_marked(mark: &str) -> Vec<u8> {
    let prefix = HELLO_BODY_PREFIX.as_bytes();
    let core = format!(
        r#"(module {PRELUDE}
          (data (i32.const 1024) "{prefix}")
          {mark}
          (func (export "wasi:http/incoming-handler@0.2.0#handle") (param $req i32) (param $out i32)
            (local $stream i32) (local $len i32) (local $plen i32)
            (call $path (local.get $req) (i32.const 48))
            (local.set $len (i32.const {prefix_len}))
            (if (i32.load8_u (i32.const 48))
              (then
                (local.set $plen (i32.load (i32.const 56)))
                (memory.copy (i32.add (i32.const 1024) (local.get $len)) (i32.load (i32.const 52)) (local.get $plen))
                (local.set $len (i32.add (local.get $len) (local.get $plen)))))
            (i32.store8 (i32.add (i32.const 1024) (local.get $len)) (i32.const 10))
            (local.set $len (i32.add (local.get $len) (i32.const 1)))
            (call $drop_request (local.get $req))
            (local.set $stream (call $start (local.get $out)))
            (drop (call $write (local.get $stream) (i32.const 1024) (local.get $len)))
            (call $finish (local.get $stream))))"#,
        prefix = wat_bytes(prefix),
        prefix_len = prefix.len(),
    );
    component("handler", &core)
}

/// Computes forever without answering.
pub fn looping() -> Vec<u8> {
    let core = format!(
        r#"(module {PRELUDE}
          (func (export "wasi:http/incoming-handler@0.2.0#handle") (param i32 i32)
            (loop $forever (br $forever))))"#
    );
    component("handler", &core)
}

/// Grows its memory by 16 pages at a time, forever.
pub fn memory_hog() -> Vec<u8> {
    let core = format!(
        r#"(module {PRELUDE}
          (func (export "wasi:http/incoming-handler@0.2.0#handle") (param i32 i32)
            (loop $forever
              (drop (memory.grow (i32.const 16)))
              (br $forever))))"#
    );
    component("handler", &core)
}

/// Answers 200 and writes `total_bytes` of `x`, 4096 bytes a call; stops when a write fails.
pub fn flood(total_bytes: u64) -> Vec<u8> {
    let core = format!(
        r#"(module {PRELUDE}
          (func (export "wasi:http/incoming-handler@0.2.0#handle") (param $req i32) (param $out i32)
            (local $stream i32) (local $left i64)
            (memory.fill (i32.const 8192) (i32.const 120) (i32.const 4096))
            (call $drop_request (local.get $req))
            (local.set $stream (call $start (local.get $out)))
            (local.set $left (i64.const {total_bytes}))
            (block $done
              (loop $more
                (br_if $done (i64.eqz (local.get $left)))
                (br_if $done (call $write (local.get $stream) (i32.const 8192) (i32.const 4096)))
                (local.set $left (i64.sub (local.get $left)
                  (select (i64.const 4096) (local.get $left) (i64.gt_u (local.get $left) (i64.const 4096)))))
                (br $more)))
            (call $finish (local.get $stream))))"#
    );
    component("handler", &core)
}

/// Makes `fields` resources without dropping them, forever, before answering.
pub fn resource_hog() -> Vec<u8> {
    let core = format!(
        r#"(module {PRELUDE}
          (func (export "wasi:http/incoming-handler@0.2.0#handle") (param i32 i32)
            (loop $forever
              (drop (call $fields))
              (br $forever))))"#
    );
    component("handler", &core)
}

/// On each request, sends `GET path` to `scheme://authority` (an unset scheme or authority
/// stays unset) and answers 200 `upstream <status>\n`, or 502 `refused <error-code case>\n`.
pub fn fetch(scheme: Option<&str>, authority: Option<&str>, path: &str) -> Vec<u8> {
    // The scheme: option<scheme> flattened as (is-some, case, string pointer, string length).
    let (scheme_some, scheme_case) = match scheme {
        None => (0, 0),
        Some("http") => (1, 0),
        Some("https") => (1, 1),
        Some(other) => panic!("scheme `{other}`"),
    };
    let authority_bytes = authority.unwrap_or("").as_bytes();
    let core = format!(
        r#"(module
          (import "wasi:http/types@0.2.0" "[constructor]outgoing-request" (func $request (param i32) (result i32)))
          (import "wasi:http/types@0.2.0" "[method]outgoing-request.set-scheme" (func $set_scheme (param i32 i32 i32 i32 i32) (result i32)))
          (import "wasi:http/types@0.2.0" "[method]outgoing-request.set-authority" (func $set_authority (param i32 i32 i32 i32) (result i32)))
          (import "wasi:http/types@0.2.0" "[method]outgoing-request.set-path-with-query" (func $set_path (param i32 i32 i32 i32) (result i32)))
          (import "wasi:http/outgoing-handler@0.2.0" "handle" (func $send (param i32 i32 i32 i32)))
          (import "wasi:http/types@0.2.0" "[method]future-incoming-response.subscribe" (func $subscribe (param i32) (result i32)))
          (import "wasi:http/types@0.2.0" "[method]future-incoming-response.get" (func $get (param i32 i32)))
          (import "wasi:io/poll@0.2.0" "[method]pollable.block" (func $block (param i32)))
          (import "wasi:http/types@0.2.0" "[method]incoming-response.status" (func $status (param i32) (result i32)))
          (import "wasi:http/types@0.2.0" "[method]outgoing-response.set-status-code" (func $set_status (param i32 i32) (result i32)))
          {PRELUDE}
          (data (i32.const 1024) "upstream ")
          (data (i32.const 1040) "refused ")
          (data (i32.const 1056) "{path}")
          (data (i32.const 2048) "{authority}")
          ;; Answer `status` with the label at `label` (of `label_len` bytes) and `n`.
          (func $answer (param $out i32) (param $code i32) (param $label i32) (param $label_len i32) (param $n i32)
            (local $resp i32) (local $stream i32) (local $len i32)
            (local.set $resp (call $response (call $fields)))
            (if (i32.ne (local.get $code) (i32.const 200))
              (then (drop (call $set_status (local.get $resp) (local.get $code)))))
            (call $response_body (local.get $resp) (i32.const 0))
            (global.set $body (i32.load (i32.const 4)))
            (call $set (local.get $out) (i32.const 0) (local.get $resp) (i32.const 0) (i64.const 0)
              (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
            (call $body_write (global.get $body) (i32.const 0))
            (local.set $stream (i32.load (i32.const 4)))
            (memory.copy (i32.const 4096) (local.get $label) (local.get $label_len))
            (local.set $len (i32.add (local.get $label_len)
              (call $decimal (local.get $n) (i32.add (i32.const 4096) (local.get $label_len)))))
            (i32.store8 (i32.add (i32.const 4096) (local.get $len)) (i32.const 10))
            (drop (call $write (local.get $stream) (i32.const 4096) (i32.add (local.get $len) (i32.const 1))))
            (call $finish (local.get $stream)))
          (func (export "wasi:http/incoming-handler@0.2.0#handle") (param $req i32) (param $out i32)
            (local $r i32) (local $future i32) (local $pollable i32)
            (call $drop_request (local.get $req))
            (local.set $r (call $request (call $fields)))
            (drop (call $set_scheme (local.get $r) (i32.const {scheme_some}) (i32.const {scheme_case}) (i32.const 0) (i32.const 0)))
            (if (i32.const {authority_some})
              (then (drop (call $set_authority (local.get $r) (i32.const 1) (i32.const 2048) (i32.const {authority_len})))))
            (drop (call $set_path (local.get $r) (i32.const 1) (i32.const 1056) (i32.const {path_len})))
            (call $send (local.get $r) (i32.const 0) (i32.const 0) (i32.const 128))
            (if (i32.load8_u (i32.const 128))
              (then
                (call $answer (local.get $out) (i32.const 502) (i32.const 1040) (i32.const 8) (i32.load8_u (i32.const 136)))
                (return)))
            (local.set $future (i32.load (i32.const 136)))
            (local.set $pollable (call $subscribe (local.get $future)))
            (call $block (local.get $pollable))
            (call $get (local.get $future) (i32.const 256))
            ;; some(ok(ok(response))): 256 = 1, 264 = 0, 272 = 0, 280 = the response.
            (if (i32.and (i32.load8_u (i32.const 256))
                  (i32.and (i32.eqz (i32.load8_u (i32.const 264))) (i32.eqz (i32.load8_u (i32.const 272)))))
              (then
                (call $answer (local.get $out) (i32.const 200) (i32.const 1024) (i32.const 9)
                  (call $status (i32.load (i32.const 280))))
                (return)))
            (call $answer (local.get $out) (i32.const 502) (i32.const 1040) (i32.const 8) (i32.load8_u (i32.const 280)))))"#,
        path = wat_bytes(path.as_bytes()),
        path_len = path.len(),
        authority = wat_bytes(authority_bytes),
        authority_some = i32::from(authority.is_some()),
        authority_len = authority_bytes.len(),
    );
    component("fetcher", &core)
}

/// Answers 200 `env=<variables> dirs=<preopens> terminal=<0|1>\n`: what it finds of the WASI
/// interfaces real toolchains' components import beyond the proxy world.
pub fn imports_everything() -> Vec<u8> {
    let core = format!(
        r#"(module
          (import "wasi:cli/environment@0.2.0" "get-environment" (func $env (param i32)))
          (import "wasi:filesystem/preopens@0.2.0" "get-directories" (func $dirs (param i32)))
          (import "wasi:cli/terminal-stdout@0.2.0" "get-terminal-stdout" (func $terminal (param i32)))
          (import "wasi:cli/exit@0.2.0" "exit" (func $exit (param i32)))
          (import "wasi:sockets/instance-network@0.2.0" "instance-network" (func $network (result i32)))
          {PRELUDE}
          (data (i32.const 1024) "env=")
          (data (i32.const 1032) " dirs=")
          (data (i32.const 1040) " terminal=")
          (func (export "wasi:http/incoming-handler@0.2.0#handle") (param $req i32) (param $out i32)
            (local $stream i32) (local $len i32)
            (call $drop_request (local.get $req))
            (call $env (i32.const 64))
            (call $dirs (i32.const 72))
            (call $terminal (i32.const 80))
            (memory.copy (i32.const 4096) (i32.const 1024) (i32.const 4))
            (local.set $len (i32.add (i32.const 4) (call $decimal (i32.load (i32.const 68)) (i32.const 4100))))
            (memory.copy (i32.add (i32.const 4096) (local.get $len)) (i32.const 1032) (i32.const 6))
            (local.set $len (i32.add (local.get $len) (i32.const 6)))
            (local.set $len (i32.add (local.get $len)
              (call $decimal (i32.load (i32.const 76)) (i32.add (i32.const 4096) (local.get $len)))))
            (memory.copy (i32.add (i32.const 4096) (local.get $len)) (i32.const 1040) (i32.const 10))
            (local.set $len (i32.add (local.get $len) (i32.const 10)))
            (local.set $len (i32.add (local.get $len)
              (call $decimal (i32.load8_u (i32.const 80)) (i32.add (i32.const 4096) (local.get $len)))))
            (i32.store8 (i32.add (i32.const 4096) (local.get $len)) (i32.const 10))
            (local.set $len (i32.add (local.get $len) (i32.const 1)))
            (local.set $stream (call $start (local.get $out)))
            (drop (call $write (local.get $stream) (i32.const 4096) (local.get $len)))
            (call $finish (local.get $stream))))"#
    );
    component("everything", &core)
}

/// The component for `world` of the guests' package around the core module `core_wat`.
pub fn component(world: &str, core_wat: &str) -> Vec<u8> {
    let mut resolve = Resolve::default();
    resolve.push_str("wasi-io.wit", WASI_IO).unwrap();
    resolve.push_str("wasi-http.wit", WASI_HTTP).unwrap();
    resolve.push_str("wasi-cli.wit", WASI_CLI).unwrap();
    resolve
        .push_str("wasi-filesystem.wit", WASI_FILESYSTEM)
        .unwrap();
    resolve.push_str("wasi-sockets.wit", WASI_SOCKETS).unwrap();
    let guests = resolve.push_str("guests.wit", GUESTS).unwrap();
    let world = resolve.select_world(&[guests], Some(world)).unwrap();
    let mut module = wat::parse_str(core_wat).unwrap();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_guest_is_a_component() {
        for (name, wasm) in [
            ("hello", hello()),
            ("hello 7", hello_numbered(7)),
            ("looping", looping()),
            ("memory_hog", memory_hog()),
            ("flood", flood(1 << 20)),
            ("resource_hog", resource_hog()),
            ("fetch", fetch(Some("http"), Some("127.0.0.1:1"), "/x")),
            ("fetch without authority", fetch(None, None, "/x")),
            ("imports_everything", imports_everything()),
        ] {
            assert_eq!(&wasm[..8], b"\0asm\x0d\0\x01\0", "{name}");
        }
    }
}
