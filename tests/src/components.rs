//! WASI 0.2 command components for the tests, built from core WAT and a small WIT world.
//!
//! The WIT below declares only the parts of the WASI 0.2.0 interfaces the guests use (with
//! their real names and types, so wasmtime's WASI implementation satisfies them). Each guest is
//! a core module using the component model's canonical ABI, given the world as metadata and
//! wrapped into a component.

use wit_parser::Resolve;

/// The parts of `wasi:io@0.2.0` the tests' components use (shared with `http_guests`).
pub(crate) const WASI_IO: &str = r#"
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

const WASI_CLOCKS: &str = r#"
package wasi:clocks@0.2.0;

interface monotonic-clock {
  use wasi:io/poll@0.2.0.{pollable};
  type duration = u64;
  subscribe-duration: func(when: duration) -> pollable;
}
"#;

const WASI_FILESYSTEM: &str = r#"
package wasi:filesystem@0.2.0;

interface types {
  type filesize = u64;

  flags descriptor-flags {
    read, write, file-integrity-sync, data-integrity-sync, requested-write-sync,
    mutate-directory,
  }
  flags path-flags { symlink-follow }
  flags open-flags { create, directory, exclusive, truncate }

  enum error-code {
    access, would-block, already, bad-descriptor, busy, deadlock, quota, exist,
    file-too-large, illegal-byte-sequence, in-progress, interrupted, invalid, io,
    is-directory, loop, too-many-links, message-size, name-too-long, no-device, no-entry,
    no-lock, insufficient-memory, insufficient-space, not-directory, not-empty,
    not-recoverable, unsupported, no-tty, no-such-device, overflow, not-permitted, pipe,
    read-only, invalid-seek, text-file-busy, cross-device,
  }

  resource descriptor {
    read: func(length: filesize, offset: filesize) -> result<tuple<list<u8>, bool>, error-code>;
    write: func(buffer: list<u8>, offset: filesize) -> result<filesize, error-code>;
    open-at: func(path-flags: path-flags, path: string, open-flags: open-flags, %flags: descriptor-flags) -> result<descriptor, error-code>;
  }
}

interface preopens {
  use types.{descriptor};
  get-directories: func() -> list<tuple<descriptor, string>>;
}
"#;

const GUESTS: &str = r#"
package warrant:guests;

world files {
  import wasi:cli/stdout@0.2.0;
  import wasi:filesystem/types@0.2.0;
  import wasi:filesystem/preopens@0.2.0;
  export wasi:cli/run@0.2.0;
}

world sleep {
  import wasi:cli/stdout@0.2.0;
  import wasi:clocks/monotonic-clock@0.2.0;
  import wasi:io/poll@0.2.0;
  export wasi:cli/run@0.2.0;
}

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

/// In its first preopened directory: writes the preopen's guest path and a newline, then reads
/// `file` (at most 4 KiB) and writes its bytes; then opens `file` for writing and writes
/// `pwned` at offset 0. Ends with `\nwrite: +` when that write succeeded, or `\nwrite: ` and
/// the character of the first error code (`A` + its number: `A` is `access`, `U` is
/// `no-entry`, a backquote is `not-permitted`). `preopen: none` when there is no preopen,
/// `read: ` and a code's character when opening or reading the file fails.
pub fn files(file: &str) -> Vec<u8> {
    let len = file.len();
    assert!(len < 200, "a short path");
    let path = file.replace('\\', "\\\\").replace('"', "\\\"");
    let core = format!(
        r#"(module
          (import "wasi:filesystem/preopens@0.2.0" "get-directories" (func $dirs (param i32)))
          (import "wasi:filesystem/types@0.2.0" "[method]descriptor.open-at"
            (func $open_at (param i32 i32 i32 i32 i32 i32 i32)))
          (import "wasi:filesystem/types@0.2.0" "[method]descriptor.read"
            (func $read (param i32 i64 i64 i32)))
          (import "wasi:filesystem/types@0.2.0" "[method]descriptor.write"
            (func $write_file (param i32 i32 i32 i64 i32)))
          {PRELUDE}
          (data (i32.const 16) "preopen: none\nwrite: +read: pwned")
          (data (i32.const 256) "{path}")
          (func $fail (param $at i32) (param $len i32) (param $code i32) (result i32)
            (i32.store8 (i32.const 60) (i32.add (i32.const 65) (local.get $code)))
            (drop (call $write (local.get $at) (local.get $len)))
            (drop (call $write (i32.const 60) (i32.const 1)))
            (i32.const 0))
          (func (export "wasi:cli/run@0.2.0#run") (result i32)
            (local $dir i32) (local $fd i32)
            (call $dirs (i32.const 2100))
            (if (i32.eqz (i32.load (i32.const 2104)))
              (then (drop (call $write (i32.const 16) (i32.const 13))) (return (i32.const 0))))
            ;; the first (descriptor, name): write the name
            (local.set $dir (i32.load (i32.load (i32.const 2100))))
            (drop (call $write (i32.load offset=4 (i32.load (i32.const 2100)))
                               (i32.load offset=8 (i32.load (i32.const 2100)))))
            (drop (call $write (i32.const 29) (i32.const 1)))
            ;; open for reading (descriptor-flags read = 1), read 4096 bytes at 0
            (call $open_at (local.get $dir) (i32.const 0) (i32.const 256) (i32.const {len})
              (i32.const 0) (i32.const 1) (i32.const 2200))
            (if (i32.load8_u (i32.const 2200))
              (then (return (call $fail (i32.const 38) (i32.const 6) (i32.load8_u (i32.const 2204))))))
            (local.set $fd (i32.load (i32.const 2204)))
            (call $read (local.get $fd) (i64.const 4096) (i64.const 0) (i32.const 2300))
            (if (i32.load8_u (i32.const 2300))
              (then (return (call $fail (i32.const 38) (i32.const 6) (i32.load8_u (i32.const 2304))))))
            (drop (call $write (i32.load (i32.const 2304)) (i32.load (i32.const 2308))))
            ;; open for writing (descriptor-flags write = 2), write `pwned` at 0
            (call $open_at (local.get $dir) (i32.const 0) (i32.const 256) (i32.const {len})
              (i32.const 0) (i32.const 2) (i32.const 2400))
            (if (i32.load8_u (i32.const 2400))
              (then (return (call $fail (i32.const 29) (i32.const 8) (i32.load8_u (i32.const 2404))))))
            (call $write_file (i32.load (i32.const 2404)) (i32.const 44) (i32.const 5) (i64.const 0)
              (i32.const 2504))
            (if (i32.load8_u (i32.const 2504))
              (then (return (call $fail (i32.const 29) (i32.const 8) (i32.load8_u (i32.const 2512))))))
            (drop (call $write (i32.const 29) (i32.const 9)))
            (i32.const 0)))"#
    );
    component("files", &core)
}

/// Waits 60 s in the host inside `run`: a monotonic-clock pollable, then `block` on it.
pub fn sleeping() -> Vec<u8> {
    let core = format!(
        r#"(module
          (import "wasi:clocks/monotonic-clock@0.2.0" "subscribe-duration" (func $after (param i64) (result i32)))
          (import "wasi:io/poll@0.2.0" "[method]pollable.block" (func $block (param i32)))
          {PRELUDE}
          (func (export "wasi:cli/run@0.2.0#run") (result i32)
            (call $block (call $after (i64.const 60000000000)))
            (i32.const 0)))"#
    );
    component("sleep", &core)
}

/// The component for `world` of the guests' package around the core module `core_wat`.
pub fn component(world: &str, core_wat: &str) -> Vec<u8> {
    let mut resolve = Resolve::default();
    resolve.push_str("wasi-io.wit", WASI_IO).unwrap();
    resolve.push_str("wasi-cli.wit", WASI_CLI).unwrap();
    resolve.push_str("wasi-sockets.wit", WASI_SOCKETS).unwrap();
    resolve.push_str("wasi-clocks.wit", WASI_CLOCKS).unwrap();
    resolve
        .push_str("wasi-filesystem.wit", WASI_FILESYSTEM)
        .unwrap();
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
