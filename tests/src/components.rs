//! WASI 0.2 command components for the tests, built from core WAT and a small WIT world.
//!
//! The WIT below declares only the parts of the WASI 0.2.0 interfaces the guests use (with
//! their real names and types, so wasmtime's WASI implementation satisfies them). Each guest is
//! a core module using the component model's canonical ABI, given the world as metadata and
//! wrapped into a component.

use wit_parser::Resolve;

const WASI_IO: &str = r#"
package wasi:io@0.2.0;

interface error {
  resource error;
}

interface poll {
  resource pollable {
    block: func();
  }
}

interface streams {
  use error.{error};

  resource input-stream;

  variant stream-error {
    last-operation-failed(error),
    closed,
  }

  resource output-stream {
    blocking-write-and-flush: func(contents: list<u8>) -> result<_, stream-error>;
  }
}
"#;

const WASI_CLI: &str = r#"
package wasi:cli@0.2.0;

interface stdout {
  use wasi:io/streams@0.2.0.{output-stream};
  get-stdout: func() -> output-stream;
}

interface environment {
  get-environment: func() -> list<tuple<string, string>>;
}

interface run {
  run: func() -> result;
}
"#;

const WASI_SOCKETS: &str = r#"
package wasi:sockets@0.2.0;

interface network {
  resource network;

  enum error-code {
    unknown, access-denied, not-supported, invalid-argument, out-of-memory, timeout,
    concurrency-conflict, not-in-progress, would-block, invalid-state, new-socket-limit,
    address-not-bindable, address-in-use, remote-unreachable, connection-refused,
    connection-reset, connection-aborted, datagram-too-large, name-unresolvable,
    temporary-resolver-failure, permanent-resolver-failure,
  }

  enum ip-address-family { ipv4, ipv6 }

  type ipv4-address = tuple<u8, u8, u8, u8>;
  type ipv6-address = tuple<u16, u16, u16, u16, u16, u16, u16, u16>;

  record ipv4-socket-address { port: u16, address: ipv4-address }
  record ipv6-socket-address { port: u16, flow-info: u32, address: ipv6-address, scope-id: u32 }

  variant ip-socket-address { ipv4(ipv4-socket-address), ipv6(ipv6-socket-address) }
}

interface instance-network {
  use network.{network};
  instance-network: func() -> network;
}

interface tcp {
  use wasi:io/streams@0.2.0.{input-stream, output-stream};
  use wasi:io/poll@0.2.0.{pollable};
  use network.{network, error-code, ip-socket-address};
  resource tcp-socket {
    start-connect: func(network: borrow<network>, remote-address: ip-socket-address) -> result<_, error-code>;
    finish-connect: func() -> result<tuple<input-stream, output-stream>, error-code>;
    subscribe: func() -> pollable;
  }
}

interface tcp-create-socket {
  use network.{error-code, ip-address-family};
  use tcp.{tcp-socket};
  create-tcp-socket: func(address-family: ip-address-family) -> result<tcp-socket, error-code>;
}
"#;

const GUESTS: &str = r#"
package warrant:guests;

world hello {
  import wasi:cli/stdout@0.2.0;
  export wasi:cli/run@0.2.0;
}

world connect {
  import wasi:cli/stdout@0.2.0;
  import wasi:sockets/instance-network@0.2.0;
  import wasi:sockets/tcp-create-socket@0.2.0;
  import wasi:sockets/tcp@0.2.0;
  export wasi:cli/run@0.2.0;
}

world env {
  import wasi:cli/stdout@0.2.0;
  import wasi:cli/environment@0.2.0;
  export wasi:cli/run@0.2.0;
}
"#;

/// Imports and helpers every guest shares: `$write(ptr, len)` writes to stdout and returns
/// 0 on success; a bump allocator serves `cabi_realloc`. A guest's own imports go before it.
const PRELUDE: &str = r#"
  (import "wasi:cli/stdout@0.2.0" "get-stdout" (func $get_stdout (result i32)))
  (import "wasi:io/streams@0.2.0" "[method]output-stream.blocking-write-and-flush"
    (func $write_and_flush (param i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.0" "[resource-drop]output-stream" (func $drop_stream (param i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "cabi_realloc") (param i32 i32) (param $align i32) (param $size i32) (result i32)
    (local $at i32)
    (local.set $at
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $at) (local.get $size)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))))
    (local.get $at))
  (func $write (param $ptr i32) (param $len i32) (result i32)
    (local $out i32)
    (local.set $out (call $get_stdout))
    (call $write_and_flush (local.get $out) (local.get $ptr) (local.get $len) (i32.const 1024))
    (call $drop_stream (local.get $out))
    (i32.load8_u (i32.const 1024)))
"#;

/// Writes `hello from a component` to stdout.
pub fn hello() -> Vec<u8> {
    let core = format!(
        r#"(module {PRELUDE}
          (data (i32.const 16) "hello from a component\n")
          (func (export "wasi:cli/run@0.2.0#run") (result i32)
            (call $write (i32.const 16) (i32.const 23))))"#
    );
    component("hello", &core)
}

/// Writes each environment variable it sees as `NAME=VALUE` lines.
pub fn env() -> Vec<u8> {
    let core = format!(
        r#"(module
          (import "wasi:cli/environment@0.2.0" "get-environment" (func $get_env (param i32)))
          {PRELUDE}
          (data (i32.const 16) "=\n")
          (func (export "wasi:cli/run@0.2.0#run") (result i32)
            (local $list i32) (local $n i32) (local $entry i32) (local $failed i32)
            (call $get_env (i32.const 32))
            (local.set $list (i32.load (i32.const 32)))
            (local.set $n (i32.load (i32.const 36)))
            (block $done
              (loop $next
                (br_if $done (i32.eqz (local.get $n)))
                (local.set $entry (local.get $list))
                (local.set $failed (i32.or (local.get $failed)
                  (call $write (i32.load (local.get $entry)) (i32.load offset=4 (local.get $entry)))))
                (local.set $failed (i32.or (local.get $failed) (call $write (i32.const 16) (i32.const 1))))
                (local.set $failed (i32.or (local.get $failed)
                  (call $write (i32.load offset=8 (local.get $entry)) (i32.load offset=12 (local.get $entry)))))
                (local.set $failed (i32.or (local.get $failed) (call $write (i32.const 17) (i32.const 1))))
                (local.set $list (i32.add (local.get $list) (i32.const 16)))
                (local.set $n (i32.sub (local.get $n) (i32.const 1)))
                (br $next)))
            (local.get $failed)))"#
    );
    component("env", &core)
}

/// Opens a TCP socket and connects it to `addr` (IPv4), waiting for the outcome, then writes
/// `connect: +` when it connected, or `connect: ` and the letter of the error code (`A` + its
/// number: `B` is `access-denied`) when socket creation or the connection failed.
pub fn connect(addr: std::net::SocketAddrV4) -> Vec<u8> {
    let [a, b, c, d] = addr.ip().octets();
    let port = addr.port();
    let core = format!(
        r#"(module
          (import "wasi:sockets/instance-network@0.2.0" "instance-network" (func $network (result i32)))
          (import "wasi:sockets/tcp-create-socket@0.2.0" "create-tcp-socket" (func $create (param i32 i32)))
          (import "wasi:sockets/tcp@0.2.0" "[method]tcp-socket.start-connect"
            (func $start_connect (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
          (import "wasi:sockets/tcp@0.2.0" "[method]tcp-socket.subscribe" (func $subscribe (param i32) (result i32)))
          (import "wasi:sockets/tcp@0.2.0" "[method]tcp-socket.finish-connect" (func $finish_connect (param i32 i32)))
          (import "wasi:io/poll@0.2.0" "[method]pollable.block" (func $block (param i32)))
          {PRELUDE}
          (data (i32.const 16) "connect: ")
          (func $report (param $failed i32) (param $code i32) (result i32)
            (i32.store8 (i32.const 40)
              (select (i32.add (i32.const 65) (local.get $code)) (i32.const 43) (local.get $failed)))
            (i32.or (call $write (i32.const 16) (i32.const 9)) (call $write (i32.const 40) (i32.const 1))))
          (func (export "wasi:cli/run@0.2.0#run") (result i32)
            (local $net i32) (local $socket i32)
            (local.set $net (call $network))
            (call $create (i32.const 0) (i32.const 2056))
            (if (i32.load8_u (i32.const 2056))
              (then (return (call $report (i32.const 1) (i32.load8_u (i32.const 2060))))))
            (local.set $socket (i32.load (i32.const 2060)))
            (call $start_connect (local.get $socket) (local.get $net)
              (i32.const 0) (i32.const {port}) (i32.const {a}) (i32.const {b}) (i32.const {c}) (i32.const {d})
              (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
              (i32.const 2048))
            (if (i32.load8_u (i32.const 2048))
              (then (return (call $report (i32.const 1) (i32.load8_u (i32.const 2049))))))
            (call $block (call $subscribe (local.get $socket)))
            (call $finish_connect (local.get $socket) (i32.const 2064))
            (call $report (i32.load8_u (i32.const 2064)) (i32.load8_u (i32.const 2068)))))"#
    );
    component("connect", &core)
}

/// Asks for stdout `count` times and never drops a handle: `count` live resources.
pub fn hoard_handles(count: u32) -> Vec<u8> {
    let core = format!(
        r#"(module {PRELUDE}
          (func (export "wasi:cli/run@0.2.0#run") (result i32)
            (local $i i32)
            (loop $again
              (drop (call $get_stdout))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $again (i32.lt_u (local.get $i) (i32.const {count}))))
            (i32.const 0)))"#
    );
    component("hello", &core)
}

/// Returns an error from `run` without writing anything.
pub fn failing() -> Vec<u8> {
    let core = format!(
        r#"(module {PRELUDE}
          (func (export "wasi:cli/run@0.2.0#run") (result i32) (i32.const 1)))"#
    );
    component("hello", &core)
}

/// Loops forever inside `run`.
pub fn spinning() -> Vec<u8> {
    let core = format!(
        r#"(module {PRELUDE}
          (func (export "wasi:cli/run@0.2.0#run") (result i32) (loop $l (br $l)) (i32.const 0)))"#
    );
    component("hello", &core)
}

/// The component for `world` of the guests' package around the core module `core_wat`.
pub fn component(world: &str, core_wat: &str) -> Vec<u8> {
    let mut resolve = Resolve::default();
    resolve.push_str("wasi-io.wit", WASI_IO).unwrap();
    resolve.push_str("wasi-cli.wit", WASI_CLI).unwrap();
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
